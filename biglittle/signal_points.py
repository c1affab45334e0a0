"""Places in the program that the signal handler (cli/interrupt.py) needs to know about.

* **C callbacks.** C code (llama.cpp's log lines while it loads a model) calls some Python
  functions back through ctypes. An exception raised inside one is only logged by Python
  ("Exception ignored on calling ctypes callback function", with a traceback) and then lost, so
  the handler must not raise there: it asks `in_c_callback(frame)` and raises later, in the first
  Python frame outside the callback. Mark such functions with `@c_callback`.

* **Pause points.** A test that interrupts the program must signal it at a known moment, not
  after a sleep (a fast machine finishes first, a slow one is still importing). `pause_point(name)`
  does nothing unless the environment names it: with BIGLITTLE_PAUSE_AT=name and
  BIGLITTLE_PAUSE_FD=<a pipe's write end>, the first time the program reaches the point it writes
  the name to that pipe and waits there until a signal arrives (tests/cli_run.py has the other end).
"""
from __future__ import annotations

import os
import threading
import time

_callback_codes: set = set()
_released = threading.Event()
_paused: set[str] = set()


def c_callback(fn):
    """Mark `fn` as called from C code: a signal handler must not raise inside it."""
    _callback_codes.add(fn.__code__)
    return fn


def in_c_callback(frame) -> bool:
    """Whether `frame` (the one a signal handler interrupted) runs inside a marked C callback."""
    while frame is not None:
        if frame.f_code in _callback_codes:
            return True
        frame = frame.f_back
    return False


def pause_point(name: str) -> None:
    """Wait here for a signal if the environment asks for this point (see the module docstring)."""
    if os.environ.get("BIGLITTLE_PAUSE_AT") != name or name in _paused:
        return
    if threading.current_thread() is not threading.main_thread():
        return  # Python runs signal handlers in the main thread only: a wait elsewhere never ends
    _paused.add(name)
    fd = int(os.environ["BIGLITTLE_PAUSE_FD"])
    os.write(fd, f"{name}\n".encode())
    os.close(fd)
    # the handler runs in this loop (time.sleep returns to let it): it raises, ending the wait, or,
    # inside a C callback, it releases it and raises once the callback has returned
    while not _released.is_set():
        time.sleep(0.005)


def release() -> None:
    """A signal arrived: a pause point waiting for it goes on (the handler calls this first)."""
    _released.set()
