"""A TCP proxy that adds a fixed delay to every chunk in both directions: a round trip through it
costs `delay_ms` more, as a network link to a remote server would.

    python -m biglittle.delay_proxy --listen 8001 --target 127.0.0.1:8000 --delay-ms 50

Used to measure the edge–cloud split at several round-trip times, and by the fault tests.
Loopback only by default.
"""
from __future__ import annotations

import argparse
import asyncio
import time


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, one_way_s: float) -> None:
    """Forward bytes, each chunk held until one_way_s after it arrived (order is kept)."""
    queue: asyncio.Queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + one_way_s, data))
    except ConnectionError:
        pass
    queue.put_nowait((0.0, None))
    try:
        await sender
    except ConnectionError:
        pass


async def serve(listen_host: str, listen_port: int, target_host: str, target_port: int, delay_ms: float):
    one_way = delay_ms / 2000.0

    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pump(client_r, server_w, one_way), _pump(server_r, client_w, one_way))

    return await asyncio.start_server(handle, listen_host, listen_port)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=int, required=True, help="port to listen on")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    ap.add_argument("--target", required=True, help="host:port to forward to")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="added round-trip time in milliseconds")
    args = ap.parse_args(argv)
    host, _, port = args.target.rpartition(":")

    async def run():
        server = await serve(args.host, args.listen, host or "127.0.0.1", int(port), args.delay_ms)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
