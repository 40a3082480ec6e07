"""Background upkeep of one channel: lease heartbeats, due retries and dead workers' messages."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from worker.constants import MAINTENANCE_INTERVAL_S

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from worker.config import ChannelConfig
    from worker.consume.settle import Settlement
    from worker.transport.queue import ChannelQueue

logger = logging.getLogger(__name__)


async def maintain(
    channel: str,
    config: ChannelConfig,
    queues: Sequence[ChannelQueue],
    settlement: Settlement,
    message_type: Callable[[bytes], str],
) -> None:
    """Run until cancelled.

    Heartbeats extend this worker's leases every third of ``lease_s``, so only a worker that
    stopped (or blocked its event loop for a whole lease) loses them. Any live worker puts
    expired leases and due retries back on the channel, whatever its own delivery mode.
    """
    interval_s = min(MAINTENANCE_INTERVAL_S, config.lease_s / 3)
    hosts = settlement.hosts
    context = f"channel {channel!r}"
    # Per host. After an outage every live worker's leases there may have run out: each
    # heartbeats first thing once the host answers again, and none requeues expired leases
    # until two rounds later, by when the live ones have been extended.
    next_heartbeat = [0.0] * len(queues)
    requeue_from = [0.0] * len(queues)
    while True:
        for index, queue in enumerate(queues):
            try:
                if config.leased and time.monotonic() >= next_heartbeat[index]:
                    await settlement.extend_leases(index)
                    next_heartbeat[index] = time.monotonic() + config.lease_s / 3
                await queue.promote_due()
                redelivered = []
                if time.monotonic() >= requeue_from[index]:
                    redelivered = await queue.requeue_expired()
            except Exception as error:
                if not hosts.failed(index, error, context):
                    raise
                next_heartbeat[index] = 0.0
                requeue_from[index] = time.monotonic() + 2 * interval_s
                continue
            hosts.answered(index, context)
            if redelivered:
                settlement.redelivered([message_type(member) for member in redelivered])
                logger.warning(
                    "Redelivering %d message(s) on channel %r whose worker stopped holding them",
                    len(redelivered),
                    channel,
                )
        await asyncio.sleep(interval_s)
