"""The remote backend's transport: JSON over HTTP with timeouts, retries and clear errors."""
from __future__ import annotations

import threading
import time

from ..errors import RemoteError


class Http:
    """A small JSON-over-HTTP client with timeouts, retries and errors that say what happened.
    Threads may share it (httpx.Client is thread-safe); after `close` every call is a RemoteError."""

    def __init__(self, base_url: str, api_key: str | None = None, connect_timeout: float = 3.0,
                 read_timeout: float = 30.0, retries: int = 2, backoff: float = 0.2):
        import httpx

        self.base_url = base_url.rstrip("/")
        self.retries, self.backoff = retries, backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)
        self.requests = 0
        self.closed = False
        self._count = threading.Lock()  # `requests += 1` from several threads

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        import httpx

        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            if self.closed:
                raise self.closed_error()
            with self._count:
                self.requests += 1
            try:
                r = self.client.request(method, path, json=body)
            except RuntimeError:
                if self.closed:  # closed by another thread while this request was on its way
                    raise self.closed_error() from None
                raise
            except httpx.ConnectError as e:
                last = f"cannot connect ({e})"
                continue
            except httpx.TimeoutException:
                last = f"no answer within {self.client.timeout.read:g} s (read timeout)"
                continue
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if r.status_code >= 500 or r.status_code == 429:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code >= 400:
                raise RemoteError(f"{self.base_url}{path} refused the request: HTTP {r.status_code}: {r.text[:300]}")
            try:
                return r.json()
            except ValueError:
                raise RemoteError(f"{self.base_url}{path} answered with something that is not JSON: "
                                  f"{r.text[:200]!r}") from None
        raise RemoteError(f"the big-model server {self.base_url} failed {path} after "
                          f"{self.retries + 1} tries: {last}")

    def close(self) -> None:
        """Close the connections (idempotent); later calls raise a RemoteError at once."""
        self.closed = True
        self.client.close()

    def closed_error(self) -> RemoteError:
        return RemoteError(f"the connection to {self.base_url} was closed (model.close()); load the remote "
                           "model again to use it")


def malformed(what: str, e: Exception) -> RemoteError:
    return RemoteError(f"malformed scoring response from the server ({what}: {type(e).__name__}: {e})")
