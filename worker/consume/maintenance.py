"""Background upkeep of one channel: lease heartbeats, due retries and dead workers' messages."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from worker.constants import MAINTENANCE_INTERVAL_S
from worker.consume.listener import wait_set

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.consume.settle import Settlement

logger = logging.getLogger(__name__)


async def maintain(settlement: Settlement, message_type: Callable[[bytes], str]) -> None:
    """Keep up the channel of ``settlement`` on each of its hosts until cancelled.

    Heartbeats extend this worker's leases every third of ``lease_s``, so only a worker that
    stopped (or blocked its event loop for a whole lease) loses them. Any live worker puts
    expired leases and due retries back on the channel, whatever its own delivery mode. Due
    retries and deferred sends are promoted when the earliest of them is due, and at least
    every interval for those that other workers schedule.
    """
    upkeep = _Upkeep(settlement, message_type)
    while True:
        # Forgotten before the round reads the next due time; one scheduled after that read is
        # noted again and waited for below.
        settlement.retry_due_at = None
        next_due_at = await upkeep.round()
        await upkeep.wait(next_due_at)


class _Upkeep:
    """One channel's upkeep on each of its layer hosts, a round at a time."""

    def __init__(self, settlement: Settlement, message_type: Callable[[bytes], str]) -> None:
        self.channel = settlement.channel
        self.config = settlement.config
        self.queues = settlement.queues
        self.settlement = settlement
        self.message_type = message_type
        self.interval_s = min(MAINTENANCE_INTERVAL_S, self.config.lease_s / 3)
        self.context = f"channel {self.channel!r}"
        # Per host. After an outage every live worker's leases there may have run out: each
        # heartbeats first thing once the host answers again, and none requeues expired leases
        # until two intervals later, by when the live ones have been extended.
        self.next_heartbeat = [0.0] * len(self.queues)
        self.next_requeue = [0.0] * len(self.queues)

    async def wait(self, next_due_at: float | None) -> None:
        """Until the next round is needed: a retry or deferred send due, a heartbeat or a
        requeue to make, or an interval gone by. A retry this worker schedules meanwhile only
        moves the wake-up, with no round before it is due."""
        round_by = time.monotonic() + self.interval_s
        scheduled = self.settlement.retry_scheduled
        while True:
            scheduled.clear()
            delay_s = self._delay_s(round_by, next_due_at)
            if delay_s <= 0:
                return
            await wait_set(scheduled, delay_s)
            if not scheduled.is_set():
                return

    def _delay_s(self, round_by: float, next_due_at: float | None) -> float:
        now = time.monotonic()
        times = [round_by, *self.next_requeue]
        if self.config.leased:
            times += self.next_heartbeat
        delay_s = min(times) - now
        for due_at in (next_due_at, self.settlement.retry_due_at):
            if due_at is not None:
                delay_s = min(delay_s, due_at - time.time())
        return max(0.0, delay_s)

    async def round(self) -> float | None:
        """Heartbeat, promote and requeue on each host where it is time; when the earliest
        retry or deferred send still waiting is due, if one is."""
        soonest: float | None = None
        for index in range(len(self.queues)):
            try:
                next_due_at = await self._host_round(index)
            except Exception as error:
                if not self.settlement.hosts.failed(index, error, self.context):
                    raise
                # Tried again next round, the heartbeat first.
                self.next_heartbeat[index] = time.monotonic() + self.interval_s
                self.next_requeue[index] = time.monotonic() + 2 * self.interval_s
                continue
            self.settlement.hosts.answered(index, self.context)
            if next_due_at is not None and (soonest is None or next_due_at < soonest):
                soonest = next_due_at
        return soonest

    async def _host_round(self, index: int) -> float | None:
        queue = self.queues[index]
        now = time.monotonic()
        if self.config.leased and now >= self.next_heartbeat[index]:
            await self.settlement.extend_leases(index)
            self.next_heartbeat[index] = time.monotonic() + self.config.lease_s / 3
        promoted = await queue.promote_due()
        if now >= self.next_requeue[index]:
            self.next_requeue[index] = now + self.interval_s
            redelivered = await queue.requeue_expired()
            if redelivered:
                self._redelivered(redelivered)
        return promoted.next_due_at

    def _redelivered(self, members: list[bytes]) -> None:
        self.settlement.redelivered([self.message_type(member) for member in members])
        logger.warning(
            "Redelivering %d message(s) on channel %r whose worker stopped holding them",
            len(members),
            self.channel,
        )
