"""Background upkeep of one channel: lease heartbeats, due retries and dead workers' messages."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from worker.constants import MAINTENANCE_INTERVAL_S
from worker.errors import REDIS_DOWN

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
    next_heartbeat = 0.0
    while True:
        heartbeat = config.leased and time.monotonic() >= next_heartbeat
        if heartbeat:
            next_heartbeat = time.monotonic() + config.lease_s / 3
        for index, queue in enumerate(queues):
            try:
                if heartbeat:
                    await settlement.extend_leases(index)
                await queue.promote_due()
                redelivered = await queue.requeue_expired()
            except REDIS_DOWN as error:
                logger.debug("Maintenance of channel %r on host %d: %s", channel, index, error)
                continue
            if redelivered:
                settlement.redelivered([message_type(member) for member in redelivered])
                logger.warning(
                    "Redelivering %d message(s) on channel %r whose worker stopped holding them",
                    len(redelivered),
                    channel,
                )
        await asyncio.sleep(interval_s)
