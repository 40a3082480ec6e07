"""The clock a schedule loop reads and sleeps on: the system's, or one a test moves by hand."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in epoch seconds, and a way to wait until a later time."""

    def now(self) -> float: ...

    async def sleep_until(self, when_s: float) -> None: ...


class SystemClock:
    """The system's wall clock."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when_s: float) -> None:
        # Sleeps in steps of at most a minute, so a wall clock set forward (NTP) is noticed.
        remaining_s = when_s - time.time()
        while remaining_s > 0:
            await asyncio.sleep(min(remaining_s, 60.0))
            remaining_s = when_s - time.time()


class ManualClock:
    """A clock that only moves when ``advance()`` or ``set()`` is called.

    Every loop sleeping on it wakes once the time it waits for has come, so tests can run
    a night of ticks, a daylight-saving change or a long outage in milliseconds::

        clock = ManualClock(1_700_000_000.0)
        await clock.advance(300)
    """

    def __init__(self, now_s: float) -> None:
        self._now_s = now_s
        self._moved = asyncio.Condition()

    def now(self) -> float:
        return self._now_s

    async def sleep_until(self, when_s: float) -> None:
        async with self._moved:
            await self._moved.wait_for(lambda: self._now_s >= when_s)

    async def set(self, now_s: float) -> None:
        """Move to ``now_s`` (never backwards) and wake the sleepers that are due."""
        async with self._moved:
            self._now_s = max(self._now_s, now_s)
            self._moved.notify_all()

    async def advance(self, seconds: float) -> None:
        await self.set(self._now_s + seconds)
