"""When the worker process last continued after being stopped (SIGSTOP or SIGTSTP, then SIGCONT).

A stopped process runs nothing, so the time it spent stopped is no handler's running time: a
message timeout must not count it. The kernel delivers SIGCONT as the process continues, and
CPython runs the handler below at the next Python call of the main thread, so the event loop's
callbacks that were due meanwhile (message timeouts) already see the new time when they run.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

_last_continued_s = 0.0
# Workers in one process share the handler: the first installs it, the last restores.
_users = 0
_previous: Any = signal.SIG_DFL


def last_continued_s() -> float:
    """When the process last continued after a stop, on ``time.monotonic()``; 0.0 if never."""
    return _last_continued_s


def _on_continue(signum: int, frame: FrameType | None) -> None:
    global _last_continued_s
    _last_continued_s = time.monotonic()


@contextlib.contextmanager
def noticing_continues() -> Iterator[None]:
    """Note every SIGCONT while the block runs.

    Only the main thread may set signal handlers: a worker run in another thread does not
    notice stops, and its timeouts count them.
    """
    global _users, _previous
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _users == 0:
        _previous = signal.signal(signal.SIGCONT, _on_continue)
    _users += 1
    try:
        yield
    finally:
        _users -= 1
        if _users == 0:
            signal.signal(signal.SIGCONT, _previous)
