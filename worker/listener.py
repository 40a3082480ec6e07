"""Pollers that move one channel's messages from every layer host into its prefetch buffer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from channels_redis.core import RedisChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker._backoff import Backoff
from worker.constants import MAX_BATCH, POLL_TIMEOUT_S
from worker.delivery import InvalidMessage, decode
from worker.prefetch import Prefetch
from worker.queue import ChannelQueue, Popped
from worker.stats import Stats

logger = logging.getLogger(__name__)

# Errors after which Redis is retried rather than the listener restarted.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

InvalidHandler = Callable[[str, int, Popped, InvalidMessage], None]


class ChannelListener:
    """Keeps ``prefetch`` topped up from ``queues`` (one per host) until stopped."""

    def __init__(
        self,
        channel: str,
        layer: RedisChannelLayer,
        queues: Sequence[ChannelQueue],
        prefetch: Prefetch,
        stats: Stats,
        on_invalid: InvalidHandler,
        poll_timeout_s: float = POLL_TIMEOUT_S,
    ) -> None:
        self.channel = channel
        self.layer = layer
        self.queues = queues
        self.prefetch = prefetch
        self.stats = stats
        self.on_invalid = on_invalid
        self.poll_timeout_s = poll_timeout_s
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True
        self.prefetch.close()

    async def poll(self, host_index: int) -> None:
        """Pop from one host until stopped; Redis errors are retried with backoff."""
        queue = self.queues[host_index]
        backoff = Backoff()
        while not self.stopping:
            try:
                await self._poll_once(host_index, queue)
            except REDIS_DOWN as error:
                self.stats.redis_errors += 1
                if backoff.failures == 0:
                    logger.warning(
                        "Redis host %d unreachable for channel %r (%s: %s); retrying with backoff",
                        host_index,
                        self.channel,
                        type(error).__name__,
                        error,
                    )
                await backoff.wait()
                continue
            if backoff.failures:
                logger.info("Redis host %d is back for channel %r", host_index, self.channel)
                backoff.reset()

    async def _poll_once(self, host_index: int, queue: ChannelQueue) -> None:
        reserved = await self.prefetch.reserve(MAX_BATCH)
        if reserved == 0:
            return
        popped: list[Popped] = []
        try:
            popped = await queue.pop(reserved)
            if not popped and not self.stopping:
                # Wait for the next message holding a single slot, so other hosts' pollers
                # can still fill the rest.
                self.prefetch.release(reserved - 1)
                reserved = 1
                one = await queue.wait_pop(self.poll_timeout_s)
                popped = [one] if one is not None else []
        finally:
            self.prefetch.release(reserved - len(popped))
            for item in popped:
                self._accept(host_index, item)

    def _accept(self, host_index: int, popped: Popped) -> None:
        self.stats.received += 1
        try:
            delivery = decode(self.layer, self.channel, host_index, popped)
        except InvalidMessage as invalid:
            self.prefetch.release(1)
            self.stats.invalid += 1
            self.on_invalid(self.channel, host_index, popped, invalid)
            return
        self.prefetch.put(delivery)


async def supervise(name: str, run: Callable[[], Awaitable[None]], stats: Stats) -> None:
    """Run ``run()`` until it returns; restart it, logged, whenever it dies unexpectedly."""
    backoff = Backoff()
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            stats.listener_restarts += 1
            logger.exception("%s died unexpectedly; restarting it", name)
            await backoff.wait()
        else:
            return
