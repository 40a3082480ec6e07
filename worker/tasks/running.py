"""When a task's ``RUNNING`` state is written: only once its function has run ``RUNNING_AFTER_S``.

A task that ends sooner has its outcome written alone (its start times are in it), which saves
one Redis round trip and one result write per task; a task that runs longer shows ``RUNNING``
while it runs, and its outcome is never written before a ``RUNNING`` write that has begun.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

#: A task still running after this long (seconds) has its ``RUNNING`` state written.
RUNNING_AFTER_S = 0.005

#: What stores a task's ``RUNNING`` state: a coroutine function runs on the worker's loop, a
#: plain one in a thread.
Write = Callable[[], None] | Callable[[], Awaitable[None]]


def _not_written(error: Exception) -> None:
    # The outcome write comes next and reports a Redis that is down; RUNNING is only what a
    # reader sees meanwhile.
    logger.warning("Could not store a task's RUNNING state: %s", error)


class RunningMark:
    """Writes ``RUNNING`` for one attempt at a task if it runs past ``RUNNING_AFTER_S``.

    ``arm()`` on the worker's loop starts looking; ``start(write)`` (from any thread) says the
    function starts now and how to write, and ``RUNNING`` is written ``after_s`` later.
    ``close()`` (from the task's thread) or ``aclose()`` (on the loop) comes before the outcome
    is written, and waits for a ``RUNNING`` write that has begun. A coroutine function writes
    on the loop; a plain one in the loop's default executor, where it completes even when the
    loop stops first.
    """

    def __init__(self, after_s: float = RUNNING_AFTER_S) -> None:
        self._write: Write | None = None
        self._started_at = 0.0
        self._after_s = after_s
        self._lock = threading.Lock()
        self._closed = False
        #: Set once a RUNNING write that has begun is done; made when one begins, so None
        #: until then.
        self._written: threading.Event | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._future: asyncio.Future[None] | None = None

    def arm(self, delay_s: float | None = None) -> None:
        """Start the clock; call on the worker's loop."""
        if not self._closed:
            delay_s = self._after_s if delay_s is None else delay_s
            self._timer = asyncio.get_running_loop().call_later(delay_s, self._begin)

    def start(self, write: Write) -> None:
        """The function starts now; ``write`` stores its ``RUNNING`` state (any thread)."""
        with self._lock:
            self._write = write
            self._started_at = time.monotonic()

    def _begin(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._write is None:
                # Still loading the result in the task's thread: look again later.
                self.arm()
                return
            # The function's own time counts, not the load before it.
            left_s = self._started_at + self._after_s - time.monotonic()
            if left_s > 0:
                self.arm(left_s)
                return
            write = self._write
            self._written = written = threading.Event()
        if inspect.iscoroutinefunction(write):
            self._future = asyncio.ensure_future(_awrite_now(write, written))
            return
        try:
            self._future = asyncio.get_running_loop().run_in_executor(
                None, _write_now, write, written
            )
        except RuntimeError:
            # The loop's executor is shut down: the worker is stopping, nothing waits to write.
            written.set()

    def close(self) -> None:
        """No ``RUNNING`` write starts from now on; wait for one that has begun (any thread)."""
        with self._lock:
            self._closed = True
            written = self._written
        if written is not None:
            written.wait()

    async def aclose(self) -> None:
        """``close()`` on the worker's loop."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._closed = True
            begun = self._written is not None
        if begun and self._future is not None:
            await asyncio.shield(self._future)


def _write_now(write: Callable[[], object], written: threading.Event) -> None:
    try:
        write()
    except Exception as error:
        _not_written(error)
    finally:
        written.set()


async def _awrite_now(write: Callable[[], Awaitable[None]], written: threading.Event) -> None:
    try:
        await write()
    except Exception as error:
        _not_written(error)
    finally:
        written.set()
