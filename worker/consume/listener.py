"""Pollers that move one channel's messages from every layer host into its prefetch buffer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from worker.backoff import Backoff
from worker.constants import IDLE_POLL_MAX_S, MAX_BATCH, POLL_TIMEOUT_S, RECONNECT_BACKOFF_MAX_S
from worker.consume.delivery import INVALID_TYPE, decode
from worker.errors import REDIS_DOWN, InvalidMessage, redis_fault
from worker.transport.pop_connection import PopConnection

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer

    from worker.config import ChannelConfig
    from worker.consume.delivery import Delivery
    from worker.consume.prefetch import Prefetch
    from worker.consume.settle import Settlement
    from worker.ops.stats import Stats
    from worker.transport.arrivals import ArrivalWatch
    from worker.transport.queue import ChannelQueue, Popped

logger = logging.getLogger(__name__)

#: The ``type`` label of messages that have none (undecodable, not a dict, no "type").

__all__ = ["REDIS_DOWN", "ChannelListener", "supervise"]


class ChannelListener:
    """Keeps ``prefetch`` topped up from ``queues`` (one per host) until stopped.

    At-most-once pops may block in Redis while the channel is empty. At-least-once pops write
    the lease in the same atomic step as the pop, which a blocking pop cannot do, so an empty
    channel waits for an arrival notice from ``arrivals`` (one per host; see
    ``transport.arrivals``), polling anyway every ``poll_timeout_s``. Where the server sends no
    notices, an empty channel is polled from 1 ms up to ``IDLE_POLL_MAX_S`` between tries.
    """

    def __init__(
        self,
        channel: str,
        config: ChannelConfig,
        layer: RedisChannelLayer,
        queues: Sequence[ChannelQueue],
        prefetch: Prefetch,
        settlement: Settlement,
        stats: Stats,
        poll_timeout_s: float = POLL_TIMEOUT_S,
        arrivals: Sequence[ArrivalWatch] = (),
    ) -> None:
        self.channel = channel
        self.config = config
        self.layer = layer
        self.queues = queues
        self.prefetch = prefetch
        self.settlement = settlement
        self.stats = stats
        self.poll_timeout_s = poll_timeout_s
        self.arrivals = arrivals
        self.stopping = False
        self._stopped = asyncio.Event()
        #: Hosts whose poller raised unexpectedly and has not completed a poll since, with why.
        self.crashed: dict[int, str] = {}

    def stop(self) -> None:
        self.stopping = True
        self._stopped.set()
        for watch in self.arrivals:
            watch.arrived.set()
        self.prefetch.close()

    async def poll(self, host_index: int) -> None:
        """Pop from one host until stopped; Redis errors are retried with backoff."""
        try:
            await self._poll(host_index)
        except Exception as error:
            self.crashed[host_index] = f"{type(error).__name__}: {error}"
            raise

    async def _poll(self, host_index: int) -> None:
        watch = self.arrivals[host_index] if self.arrivals else None
        popper = PopConnection(self.queues[host_index], watch)
        try:
            await self._poll_on(host_index, popper)
        finally:
            await popper.aclose()

    async def _poll_on(self, host_index: int, popper: PopConnection) -> None:
        watch = popper.watch
        backoff = Backoff()
        idle_s = 0.0
        while not self.stopping:
            if watch is not None:
                # Cleared before the pop: a message arriving during it wakes the next wait.
                watch.arrived.clear()
            try:
                found, remaining = await self._poll_once(host_index, popper)
            except Exception as error:
                # Unreachable, refusing for now (MISCONF, READONLY, BUSY...) or refusing the
                # credentials: logged once per host by the worker, and waited out here.
                if not self.settlement.hosts.failed(host_index, error, f"channel {self.channel!r}"):
                    raise
                await self._sleep(backoff.next_delay_s())
                continue
            if found:
                # Let the handlers waiting for these messages start before the next round trip
                # is prepared: it would otherwise run first and delay every one of them.
                await asyncio.sleep(0)
            self.crashed.pop(host_index, None)
            self.settlement.hosts.answered(host_index, f"channel {self.channel!r}")
            backoff.reset()
            if found:
                idle_s = 0.0
            if remaining or not self.config.leased:
                # More is waiting, or an at-most-once pop blocks in Redis when there is none.
                continue
            if watch is not None and watch.live:
                # Until the key changed since the clear above, or a safety poll is due.
                await wait_set(watch.arrived, self.poll_timeout_s)
                continue
            idle_s = min(IDLE_POLL_MAX_S, max(0.001, idle_s * 2))
            await self._sleep(idle_s)

    async def _sleep(self, delay_s: float) -> None:
        """Sleep, but wake at once when the listener is stopped."""
        await wait_set(self._stopped, delay_s)

    async def _poll_once(self, host_index: int, popper: PopConnection) -> tuple[int, int]:
        """Pop what the prefetch bound allows: how many were popped, and how many are left."""
        reserved = await self.prefetch.reserve(MAX_BATCH)
        if reserved == 0:
            return 0, 0
        popped: list[Popped] = []
        remaining = 0
        try:
            lease_deadline = time.time() + self.config.lease_s if self.config.leased else 0.0
            popped, remaining = await popper.pop(reserved, lease_deadline)
            if not popped and not self.stopping and not self.config.leased:
                # Wait for the next message holding a single slot, so other hosts' pollers
                # can still fill the rest.
                self.prefetch.release(reserved - 1)
                reserved = 1
                one = await popper.wait_pop(self.poll_timeout_s)
                popped = [one] if one is not None else []
        finally:
            self.prefetch.release(reserved - len(popped))
        for item in popped:
            await self._accept(host_index, item)
        return len(popped), remaining

    async def _accept(self, host_index: int, popped: Popped) -> None:
        try:
            delivery = self._check(host_index, popped)
        except InvalidMessage as invalid:
            self.settlement.received(INVALID_TYPE)
            self.prefetch.release(1)
            await self.settlement.dead_letter(host_index, popped, f"message {invalid}")
            return
        self.settlement.received(delivery.label)
        if popped.previous_attempts >= self.config.max_attempts:
            # Redelivered after its workers died, as often as it may be tried.
            self.prefetch.release(1)
            await self.settlement.dead_letter(
                host_index,
                popped,
                f"exhausted {popped.previous_attempts} attempt(s); its worker stopped "
                "while handling it each time",
                message=delivery.message,
                first_attempt_at=popped.first_attempt_at,
            )
            return
        self.settlement.hold(delivery)
        self.settlement.plan_retry(delivery)
        self.prefetch.put(delivery)

    def _check(self, host_index: int, popped: Popped) -> Delivery:
        size = len(popped.member)
        if size > self.config.max_message_bytes:
            raise InvalidMessage(
                f"is {size} bytes, over the {self.config.max_message_bytes}-byte limit "
                "(max_message_bytes / --max-message-bytes)"
            )
        return decode(self.layer, self.channel, host_index, popped)


async def wait_set(event: asyncio.Event, timeout_s: float) -> None:
    """Return once ``event`` is set or ``timeout_s`` has passed, whichever comes first."""
    # asyncio.timeout, unlike wait_for, needs no extra task on the way to a message.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()


async def supervise(name: str, run: Callable[[], Awaitable[None]], stats: Stats) -> None:
    """Run ``run()`` until it returns; restart it with backoff whenever it dies unexpectedly.

    A failure is logged with its traceback once, and again only when its reason changes, so a
    task that keeps failing the same way does not flood the log.
    """
    backoff = Backoff()
    last_reason: str | None = None
    while True:
        started_s = time.monotonic()
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            stats.listener_restarts += 1
            fault = redis_fault(error)
            reason = fault.reason if fault is not None else f"{type(error).__name__}: {error}"
            if reason != last_reason:
                logger.error(
                    "%s died unexpectedly (%s); restarting it",
                    name,
                    reason,
                    exc_info=fault is None,
                )
            else:
                logger.debug("%s died again (%s); restarting it", name, reason)
            last_reason = reason
            if time.monotonic() - started_s > RECONNECT_BACKOFF_MAX_S * 2:
                # It ran fine for a while: this is a new failure, not a crash loop.
                backoff.reset()
            await backoff.wait()
        else:
            return
