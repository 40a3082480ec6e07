"""A bounded buffer of messages taken from Redis but not yet started by a handler."""

from __future__ import annotations

import asyncio

from worker.consume.delivery import Delivery


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
        # Unbounded here (the bound is kept by reservations); a put wakes one waiting instance
        # only, where an event would wake every idle one to find one message between them.
        self._items: asyncio.Queue[Delivery] = asyncio.Queue()
        self._reserved = 0
        self._closed = False
        self._space = asyncio.Event()

    @property
    def free(self) -> int:
        return self.limit - self._items.qsize() - self._reserved

    def __len__(self) -> int:
        return self._items.qsize()

    @property
    def _running_low(self) -> bool:
        """At most half the buffer is held or about to be: time for a poller to refill it."""
        return self._items.qsize() + self._reserved <= self.low_water

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
        self._items.put_nowait(delivery)

    async def get(self) -> Delivery:
        delivery = await self._items.get()
        if self._running_low:
            # Only now can a waiting poller go on; waking it on every take costs a task step.
            self._space.set()
        return delivery

    def close(self) -> None:
        """Stop handing out reservations; waiting pollers return 0."""
        self._closed = True
        self._space.set()

    def drain(self) -> list[Delivery]:
        """Remove and return everything not yet started."""
        items: list[Delivery] = []
        while not self._items.empty():
            items.append(self._items.get_nowait())
        return items
