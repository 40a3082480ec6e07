"""What happens to a message once its handler ends: acknowledged, retried or dead-lettered."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from worker.dead_letters import DeadLetter, message_id
from worker.errors import REDIS_DOWN
from worker.logs import message_fields
from worker.metrics import NullMetrics

if TYPE_CHECKING:
    from worker.config import ChannelConfig
    from worker.dead_letters import DeadLetters
    from worker.delivery import Delivery
    from worker.queue import ChannelQueue, Popped
    from worker.stats import Stats

logger = logging.getLogger(__name__)


def retry_delay_s(config: ChannelConfig, attempt: int) -> float:
    """Exponential backoff with full jitter after the ``attempt``-th failure."""
    ceiling = min(config.retry_backoff_max_s, config.retry_backoff_min_s * 2 ** (attempt - 1))
    return random.uniform(config.retry_backoff_min_s, max(config.retry_backoff_min_s, ceiling))


class Settlement:
    """Records outcomes for one channel in Redis.

    Acknowledgements are batched: while one round trip is in flight the next ones gather, so a
    busy channel pays one Redis call per batch, not per message.
    """

    def __init__(
        self,
        channel: str,
        config: ChannelConfig,
        queues: Sequence[ChannelQueue],
        dead_letters: DeadLetters,
        stats: Stats,
        worker_id: str,
        metrics: NullMetrics | None = None,
    ) -> None:
        self.channel = channel
        self.config = config
        self.queues = queues
        self.dead_letters = dead_letters
        self.stats = stats
        self.worker_id = worker_id
        self.metrics = metrics or NullMetrics()
        #: Handlers finished on this channel, for throughput figures.
        self.completed_count = 0
        #: Members this worker holds (prefetched or running), per host, for lease heartbeats.
        self.held: dict[int, set[bytes]] = defaultdict(set)
        # Per host: finished members, and those of them that also have attempt records.
        self._acks: dict[int, list[bytes]] = defaultdict(list)
        self._retried_acks: dict[int, list[bytes]] = defaultdict(list)
        self._ack_ready = asyncio.Event()

    def hold(self, delivery: Delivery) -> None:
        if self.config.leased:
            self.held[delivery.host_index].add(delivery.popped.member)

    def release(self, delivery: Delivery) -> None:
        self.held[delivery.host_index].discard(delivery.popped.member)

    def completed(self, delivery: Delivery) -> None:
        """The handler finished: drop the lease and attempt records (batched)."""
        self.release(delivery)
        self.completed_count += 1
        if delivery.attempt > 1:
            self._retried_acks[delivery.host_index].append(delivery.popped.member)
        elif not self.config.leased:
            return
        self._acks[delivery.host_index].append(delivery.popped.member)
        self._ack_ready.set()

    async def flush_acks_forever(self) -> None:
        while True:
            await self._ack_ready.wait()
            self._ack_ready.clear()
            await self.flush_acks()

    async def flush_acks(self) -> None:
        for index, members in list(self._acks.items()):
            if not members:
                continue
            self._acks[index] = []
            retried, self._retried_acks[index] = self._retried_acks[index], []
            try:
                await self.queues[index].settle(members, retried)
            except REDIS_DOWN as error:
                # The leases expire and the messages are redelivered: duplicates, not losses.
                logger.warning(
                    "Could not acknowledge %d message(s) on channel %r: %s; they will be "
                    "redelivered",
                    len(members),
                    self.channel,
                    error,
                )

    async def failed(
        self, delivery: Delivery, error: BaseException, reason: str, duration_s: float = 0.0
    ) -> None:
        """The handler raised or timed out: retry with backoff, or dead-letter."""
        self.release(delivery)
        attempt = delivery.attempt
        if attempt < self.config.max_attempts:
            delay_s = retry_delay_s(self.config, attempt)
            try:
                await self.queues[delivery.host_index].schedule_retry(
                    delivery.popped.member, time.time() + delay_s, delivery.first_attempt_at
                )
            except REDIS_DOWN as redis_error:
                self._lost(delivery, redis_error)
                return
            self.stats.retried += 1
            self.metrics.retried(self.channel, delivery.type)
            logger.warning(
                "Retrying %r on channel %r in %.1f s (attempt %d of %d failed after %.1f ms: %s)",
                delivery.type,
                self.channel,
                delay_s,
                attempt,
                self.config.max_attempts,
                duration_s * 1000,
                reason,
                extra=message_fields(self.channel, delivery.type, attempt, duration_s),
            )
            return
        await self.dead_letter(
            delivery.host_index,
            delivery.popped,
            f"failed {attempt} attempt(s); last: {reason}",
            message=delivery.message,
            error=error,
            first_attempt_at=delivery.first_attempt_at,
            last_attempt_at=delivery.started_at_epoch,
        )

    async def dead_letter(
        self,
        host_index: int,
        popped: Popped,
        reason: str,
        *,
        message: object = None,
        error: BaseException | None = None,
        first_attempt_at: float | None = None,
        last_attempt_at: float | None = None,
    ) -> None:
        """Move a message to the channel's dead letters with why; never drop it silently."""
        self.held[host_index].discard(popped.member)
        letter = DeadLetter(
            channel=self.channel,
            reason=reason,
            attempts=popped.previous_attempts + (1 if error is not None else 0),
            message_type=message.get("type") if isinstance(message, dict) else None,
            message_id=message_id(message),
            error_type=type(error).__name__ if error is not None else None,
            error=str(error) if error is not None else None,
            traceback=("".join(traceback.format_exception(error)) if error is not None else None),
            first_attempt_at=first_attempt_at,
            last_attempt_at=last_attempt_at,
            worker_id=self.worker_id,
            size_bytes=len(popped.member),
            host_index=host_index,
        )
        try:
            trimmed = await self.dead_letters.add(letter, popped.member)
        except REDIS_DOWN as redis_error:
            logger.error(
                "Could not dead-letter a message on channel %r (%s): %s; it is lost",
                self.channel,
                reason,
                redis_error,
            )
            return
        self.stats.dead += 1
        self.metrics.dead_lettered(self.channel, str(letter.message_type or "(invalid)"))
        logger.error(
            "Dead-lettered %s on channel %r after %d attempt(s) (id %s): %s",
            repr(letter.message_type) if letter.message_type else "an invalid message",
            self.channel,
            letter.attempts,
            letter.id,
            reason,
            extra=message_fields(
                self.channel, str(letter.message_type or "(invalid)"), letter.attempts
            ),
        )
        if trimmed:
            self.stats.dead_trimmed += trimmed
            logger.warning(
                "Dead letters of channel %r over their bound: %d oldest removed",
                self.channel,
                trimmed,
            )

    def _lost(self, delivery: Delivery, error: BaseException) -> None:
        if self.config.leased:
            logger.warning(
                "Could not schedule a retry of %r on channel %r (%s); its lease will expire "
                "and it will be redelivered",
                delivery.type,
                self.channel,
                error,
            )
        else:
            logger.error(
                "Could not schedule a retry of %r on channel %r (%s); at-most-once: it is lost",
                delivery.type,
                self.channel,
                error,
            )
