"""Ctrl-C (SIGINT) and SIGTERM on the command line: one line, exit 130 (143), at any moment.

Python's default turns SIGINT into a KeyboardInterrupt, which click turns into "Aborted!" and
exit 1, which code that catches BaseException can swallow (a whole generation then ran on after a
Ctrl-C during model loading), and which prints a long traceback from inside torch's imports.

Here the handler raises `Interrupted` instead (click does not catch it), so `finally` and `with`
blocks still clean up (a spinner, a half-assembled model file), and the entry point turns it into
the line and the exit status. When there is nothing to unwind yet (the imports before the entry
point runs), when a second signal comes, or when the exception was swallowed and the command is
still running GRACE_S later, the process ends at once: the temporary files registered here are
removed, child processes (pip downloads) are asked to stop, and it exits.

A signal that lands inside a C callback (llama.cpp calls Python back for its log lines while it
loads a model) raises nothing there, where Python would only print "Exception ignored" and a
traceback: the handler arms a profile hook that raises in the first Python frame outside the
callback (signal_points.py).

Only the `biglittle` entry point installs the handler; importing this package changes nothing.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from contextlib import contextmanager

from .. import signal_points

# how long a command may run on after its Interrupted was swallowed; tests set it high, so that a
# swallowed exception shows as a command that ran on instead of hiding behind this deadline
GRACE_S = float(os.environ.get("BIGLITTLE_GRACE_S") or 3.0)
WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}

_temp_paths: set[str] = set()
# raised: the signal number once Interrupted was raised; stderr: a descriptor of the user's stderr
_state = {"catching": False, "raised": 0, "stderr": None}
_exit_lock = threading.Lock()


class Interrupted(BaseException):
    """Raised by the handler; a BaseException that is not a KeyboardInterrupt, so click lets it through."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def is_entry_point() -> bool:
    """Whether this process is the `biglittle` command (the script, or python -m biglittle.cli)."""
    return os.path.basename(sys.argv[0] if sys.argv else "") == "biglittle" or sys.argv[:1] == ["-m"]


def install() -> None:
    if threading.current_thread() is threading.main_thread():
        if _state["stderr"] is None:
            # the line goes to the stderr the user sees, even while a library points descriptor 2
            # at /dev/null (llama-cpp-python does, while it loads a model)
            _state["stderr"] = os.dup(2)
        for sig in WORDS:
            signal.signal(sig, _on_signal)


def _on_signal(signum, frame):
    signal_points.release()
    if _state["catching"] and not _state["raised"]:
        _state["raised"] = signum
        watchdog = threading.Timer(GRACE_S, exit_now, (signum,))
        watchdog.daemon = True
        watchdog.start()
        if signal_points.in_c_callback(frame):
            sys.setprofile(_raise_outside_callbacks)
            return
        raise Interrupted(signum)
    exit_now(signum)


def _raise_outside_callbacks(frame, event, arg):
    """A profile hook (sys.setprofile): raise the pending Interrupted at the first call or return
    event outside a C callback, i.e. once the C code has come back to Python."""
    if signal_points.in_c_callback(frame):
        return
    sys.setprofile(None)
    raise Interrupted(_state["raised"])


@contextmanager
def catching():
    """Run the command; a signal during it unwinds the stack, then ends the process."""
    _state["catching"] = True
    try:
        yield
    except Interrupted as e:
        exit_now(e.signum)
    finally:
        _state["catching"] = False
        if _state["raised"]:
            # the exception was swallowed (code that catches BaseException, a __del__) and the
            # command ran to its end (or to sys.exit): it still ends as interrupted
            exit_now(_state["raised"])


def exit_now(signum: int) -> None:
    """Remove the registered temp files, stop child processes, print one line, exit 128 + signum."""
    if not _exit_lock.acquire(blocking=False):
        return  # another thread is already ending the process
    for path in list(_temp_paths):
        try:
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        except OSError:
            pass
    _stop_children()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a stream closed or in use: what it held is lost, the exit is not
            pass
    # on a terminal: clear a spinner's line and show the cursor it hid
    fd = 2 if _state["stderr"] is None else _state["stderr"]
    tty = "\r\x1b[K\x1b[?25h" if os.isatty(fd) else ""
    os.write(fd, f"{tty}{WORDS.get(signum, 'stopped')}\n".encode())
    os._exit(128 + signum)


def _stop_children() -> None:
    """SIGTERM to this process's children (a pip download): killed from outside, we do not leave them running."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass


def register_temp(path: str) -> None:
    _temp_paths.add(str(path))


def unregister_temp(path: str) -> None:
    _temp_paths.discard(str(path))
