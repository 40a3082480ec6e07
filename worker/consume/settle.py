"""A message's fate once taken: acknowledged, retried, dead-lettered or given back, counted once."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from worker.backoff import Backoff, full_jitter_delay_s
from worker.consume.delivery import INVALID_TYPE, RETRY_DELAY_KEY, message_label
from worker.consume.outage import RedisHosts
from worker.errors import HandlerTimeout, PermanentFailure
from worker.names import is_task_channel
from worker.ops.logs import message_fields
from worker.ops.metrics import NullMetrics
from worker.transport.dead_letters import DeadLetter, message_id

if TYPE_CHECKING:
    from worker.config import ChannelConfig
    from worker.consume.delivery import Delivery
    from worker.ops.stats import Stats
    from worker.transport.dead_letters import DeadLetters
    from worker.transport.queue import ChannelQueue, Popped

logger = logging.getLogger(__name__)

T = TypeVar("T")


def retry_delay_s(config: ChannelConfig, attempt: int) -> float:
    """Exponential backoff with full jitter after the ``attempt``-th failure."""
    return full_jitter_delay_s(attempt - 1, config.retry_backoff_min_s, config.retry_backoff_max_s)


class Settlement:
    """Records outcomes for one channel in Redis.

    Acknowledgements are batched: while one round trip is in flight the next ones gather, so a
    busy channel pays one Redis call per batch, not per message.

    An outcome Redis refuses for a while (unreachable, MISCONF, READONLY, BUSY, OOM...) is kept
    and written again with backoff until Redis takes it, and the message's lease is extended by
    the heartbeats meanwhile, so a finished message is not redelivered and a failed one is not
    charged a second attempt because Redis was away.
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
        hosts: RedisHosts | None = None,
    ) -> None:
        self.channel = channel
        self.config = config
        self.queues = queues
        self.dead_letters = dead_letters
        self.stats = stats
        self.worker_id = worker_id
        self.metrics = metrics or NullMetrics()
        self.hosts = hosts or RedisHosts([str(i) for i in range(len(queues))], stats, self.metrics)
        self._context = f"channel {channel!r}"
        self._task_channel = is_task_channel(channel)
        #: Handlers finished on this channel, for throughput figures.
        self.completed_count = 0
        #: Members this worker holds (prefetched or running), per host, for lease heartbeats.
        self.held: dict[int, set[bytes]] = defaultdict(set)
        # Per host: finished members, and those of them that also have attempt records.
        self._acks: dict[int, list[bytes]] = defaultdict(list)
        self._retried_acks: dict[int, list[bytes]] = defaultdict(list)
        self._ack_ready = asyncio.Event()
        #: When the earliest retry this worker scheduled since the last maintenance round is
        #: due, and an event set with each, so the maintenance promotes them on time.
        self.retry_due_at: float | None = None
        self.retry_scheduled = asyncio.Event()

    def hold(self, delivery: Delivery) -> None:
        if self.config.leased:
            self.held[delivery.host_index].add(delivery.popped.member)

    def plan_retry(self, delivery: Delivery) -> None:
        """Choose, as it is taken, how long a failure of this attempt would wait for a retry.

        On a task channel the choice travels in the message (``RETRY_DELAY_KEY``), so the task
        consumer can store when the next attempt comes; other consumers see their messages as
        sent.
        """
        if delivery.attempt < self.config.max_attempts:
            delivery.retry_delay_s = retry_delay_s(self.config, delivery.attempt)
            if self._task_channel:
                delivery.message[RETRY_DELAY_KEY] = delivery.retry_delay_s

    def release(self, delivery: Delivery) -> None:
        self.held[delivery.host_index].discard(delivery.popped.member)

    def completed(self, delivery: Delivery, duration_s: float = 0.0) -> None:
        """The handler finished: count it once, drop the lease and attempt records (batched).

        The message stays held, its lease extended, until its acknowledgement is written.
        """
        self.completed_count += 1
        self.stats.completed += 1
        self.metrics.completed(self.channel, delivery.label, duration_s)
        if delivery.attempt > 1 or (delivery.popped.priority and self.config.leased):
            # Its attempt or priority-level records go with its lease (a message taken without
            # a lease has no level record: transport/lua/levels.lua).
            self._retried_acks[delivery.host_index].append(delivery.popped.member)
        elif not self.config.leased:
            self.release(delivery)
            return
        self._acks[delivery.host_index].append(delivery.popped.member)
        self._ack_ready.set()

    def received(self, message_type: str) -> None:
        """A message was taken from the channel; ``INVALID_TYPE`` when it cannot be handled."""
        self.stats.received += 1
        if message_type == INVALID_TYPE:
            self.stats.invalid += 1
        self.metrics.received(self.channel, message_type)

    async def extend_leases(self, host_index: int) -> None:
        """Push the leases of every message this worker holds on a host a whole lease ahead."""
        held = list(self.held[host_index])
        await self.queues[host_index].extend(held, time.time() + self.config.lease_s)

    async def give_back(self, deliveries: Sequence[Delivery]) -> None:
        """Put messages taken but not finished back at the head of their channel (on a stop).

        Under at-least-once a failure to reach Redis leaves them leased, so they come back when
        the lease runs out; under at-most-once they are lost, as that mode promises.
        """
        by_host: dict[int, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            by_host[delivery.host_index].append(delivery)
            self.release(delivery)
        for index, held in by_host.items():
            try:
                await self.queues[index].give_back([d.popped.member for d in held])
            except Exception as error:
                if not self.hosts.failed(index, error, self._context):
                    raise
                fate = "their leases will expire and they will be redelivered"
                if not self.config.leased:
                    fate = "they are lost"
                logger.error(
                    "Could not return %d message(s) to channel %r on host %d: %s; %s",
                    len(held),
                    self.channel,
                    index,
                    error,
                    fate,
                )
                continue
            self.stats.returned += len(held)
            logger.info("Returned %d message(s) to channel %r", len(held), self.channel)

    def redelivered(self, message_types: Sequence[str]) -> None:
        """Messages whose lease ran out went back on the channel, one per type given."""
        self.stats.redelivered += len(message_types)
        for message_type in message_types:
            self.metrics.redelivered(self.channel, message_type)

    async def flush_acks_forever(self) -> None:
        """Write acknowledgements as they come; keep and retry those Redis refused."""
        backoff = Backoff()
        while True:
            await self._ack_ready.wait()
            self._ack_ready.clear()
            if await self.flush_acks():
                backoff.reset()
                continue
            self._ack_ready.set()
            await backoff.wait()

    async def flush_acks(self) -> bool:
        """Acknowledge what finished; False when some host refused (kept for the next try).

        Acknowledging is idempotent (it removes a lease and attempt records), so a batch whose
        reply was lost is simply sent again.
        """
        done = True
        for index, members in list(self._acks.items()):
            if not members:
                continue
            self._acks[index] = []
            retried, self._retried_acks[index] = self._retried_acks[index], []
            try:
                await self.queues[index].settle(members, retried)
            except BaseException as error:
                # Kept in front of what finished meanwhile, still held, so still leased.
                self._acks[index][:0] = members
                self._retried_acks[index][:0] = retried
                if isinstance(error, Exception) and self.hosts.failed(index, error, self._context):
                    done = False
                    continue
                raise
            self.hosts.answered(index, self._context)
            if self.config.leased:
                self.held[index].difference_update(members)
        return done

    def _retry_due(self, due_at: float) -> None:
        if self.retry_due_at is None or due_at < self.retry_due_at:
            self.retry_due_at = due_at
        self.retry_scheduled.set()

    def unacknowledged(self) -> int:
        """Finished messages whose acknowledgement Redis has not taken yet."""
        return sum(len(members) for members in self._acks.values())

    async def persist(self, host_index: int, write: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis write of a message's outcome until Redis takes it.

        Errors that say Redis is away or refusing for now are waited out with backoff; any
        other error propagates.
        """
        backoff = Backoff()
        while True:
            try:
                result = await write()
            except Exception as error:
                if not self.hosts.failed(host_index, error, self._context):
                    raise
                await backoff.wait()
                continue
            self.hosts.answered(host_index, self._context)
            return result

    async def failed(
        self, delivery: Delivery, error: BaseException, reason: str, duration_s: float = 0.0
    ) -> None:
        """The handler raised or timed out: count it, then retry with backoff or dead-letter."""
        self.stats.failed += 1
        if isinstance(error, HandlerTimeout):
            self.stats.timed_out += 1
        self.metrics.failed(self.channel, delivery.label, duration_s)
        attempt = delivery.attempt
        # Retrying cannot bring back a missing function, for instance.
        retryable = not isinstance(error, PermanentFailure)
        if retryable and attempt < self.config.max_attempts:
            delay_s = delivery.retry_delay_s
            if delay_s is None:
                delay_s = retry_delay_s(self.config, attempt)
            queue = self.queues[delivery.host_index]
            due_at = time.time() + delay_s
            # Held (so leased) until the retry is scheduled, however long Redis refuses it.
            await self.persist(
                delivery.host_index,
                lambda: queue.schedule_retry(
                    delivery.popped.member,
                    due_at,
                    delivery.first_attempt_at,
                    delivery.popped.priority,
                ),
            )
            self.release(delivery)
            self._retry_due(due_at)
            self.stats.retried += 1
            self.metrics.retried(self.channel, delivery.label)
            logger.warning(
                "Retrying %r on channel %r in %.1f s (attempt %d of %d failed after %.1f ms: %s)",
                delivery.label,
                self.channel,
                delay_s,
                attempt,
                self.config.max_attempts,
                duration_s * 1000,
                reason,
                extra=message_fields(self.channel, delivery.label, attempt, duration_s),
            )
            return
        summary = (
            f"failed {attempt} attempt(s); last: {reason}"
            if retryable
            else f"failed permanently on attempt {attempt}: {reason}"
        )
        await self.dead_letter(
            delivery.host_index,
            delivery.popped,
            summary,
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
        """Move a message to the channel's dead letters with why; never drop it silently.

        Held (so leased) until the dead letter is written, however long Redis refuses it.
        """
        letter = DeadLetter(
            channel=self.channel,
            reason=reason,
            attempts=popped.previous_attempts + (1 if error is not None else 0),
            message_type=message_label(message),
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
        if self.config.leased:
            self.held[host_index].add(popped.member)
        trimmed = await self.persist(
            host_index, lambda: self.dead_letters.add(letter, popped.member, popped.priority)
        )
        self.held[host_index].discard(popped.member)
        self.stats.dead += 1
        self.metrics.dead_lettered(self.channel, str(letter.message_type or INVALID_TYPE))
        logger.error(
            "Dead-lettered %s on channel %r after %d attempt(s) (id %s): %s",
            repr(letter.message_type) if letter.message_type else "an invalid message",
            self.channel,
            letter.attempts,
            letter.id,
            reason,
            extra=message_fields(
                self.channel, str(letter.message_type or INVALID_TYPE), letter.attempts
            ),
        )
        if trimmed:
            self.stats.dead_trimmed += trimmed
            logger.warning(
                "Dead letters of channel %r over their bound: %d oldest removed",
                self.channel,
                trimmed,
            )
