"""A bounded buffer of messages taken from Redis but not yet started by a handler."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from worker.delivery import Delivery


class Prefetch:
    """At most ``limit`` messages are held here or reserved by a poller about to pop them.

    Pollers ``reserve`` slots before asking Redis, so a backlog stays in Redis, visible to other
    workers and safe from this process crashing, instead of in memory (django/channels_redis#413).
    A poller refills only once at most half the buffer is held: under a backlog each round trip
    then pops many messages instead of the one a handler just took, and handlers never wait for
    it, since half the buffer is still ready for them.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.low_water = limit // 2
        self._items: deque[Delivery] = deque()
        self._reserved = 0
        self._closed = False
        self._space = asyncio.Event()
        # One future per instance waiting for a message. A put wakes only the first: with an
        # event every idle instance of the channel would wake to find one message between them.
        self._getters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        return self.limit - len(self._items) - self._reserved

    def __len__(self) -> int:
        return len(self._items)

    @property
    def _running_low(self) -> bool:
        """At most half the buffer is held or about to be: time for a poller to refill it."""
        return len(self._items) + self._reserved <= self.low_water

    async def reserve(self, most: int) -> int:
        """Wait until the buffer runs low, then reserve up to ``most`` free slots; 0 once closed."""
        while not self._running_low and not self._closed:
            self._space.clear()
            await self._space.wait()
        if self._closed:
            return 0
        count = min(most, self.free)
        self._reserved += count
        return count

    def release(self, count: int) -> None:
        """Give back reserved slots that were not filled."""
        self._reserved -= count
        if count:
            self._space.set()

    def put(self, delivery: Delivery) -> None:
        """Fill one reserved slot."""
        self._reserved -= 1
        self._items.append(delivery)
        self._wake_getter()

    async def get(self) -> Delivery:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                if getter.cancelled():
                    with contextlib.suppress(ValueError):  # unless a put already skipped it
                        self._getters.remove(getter)
                else:
                    # Woken for a message, then cancelled: pass the wake-up on.
                    self._wake_getter()
                raise
        delivery = self._items.popleft()
        if self._running_low:
            # Only now can a waiting poller go on; waking it on every take costs a task step.
            self._space.set()
        return delivery

    def _wake_getter(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    def close(self) -> None:
        """Stop handing out reservations; waiting pollers return 0."""
        self._closed = True
        self._space.set()

    def drain(self) -> list[Delivery]:
        """Remove and return everything not yet started."""
        items = list(self._items)
        self._items.clear()
        return items
