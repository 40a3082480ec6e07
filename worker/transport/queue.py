"""Redis operations on one channel on one layer host, in channels-redis's own format.

channels-redis stores a general channel as a sorted set ``<prefix><channel>`` on every host,
members being serialised messages scored by their send time. Senders trim members older than
``expiry`` on each send and expire the key ``expiry`` seconds after the last send.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from worker.transport import scripts
from worker.transport.keys import ChannelKeys

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Messages moved per script call by the background maintenance, to keep each call short.
MAINTENANCE_BATCH = 500


@dataclass(frozen=True, slots=True)
class Popped:
    """A raw message taken off a channel: its serialised bytes, send-time score and attempts."""

    member: bytes
    score: float
    #: Attempts recorded before this delivery (retries and redeliveries); 0 for a fresh message.
    previous_attempts: int = 0
    #: When the first of those attempts started, if there were any.
    first_attempt_at: float | None = None


class ChannelQueue:
    """One channel's keys on one layer host."""

    def __init__(self, redis: Redis, keys: ChannelKeys, expiry_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.key = self.keys.queue
        self.expiry_s = expiry_s

    def pop_keys(self) -> list[str]:
        """The ``KEYS`` of ``scripts.POP``, which a poller runs (``pop_connection``)."""
        keys = self.keys
        return [keys.queue, keys.inflight, keys.attempts, keys.first_attempt]

    def pop_args(self, count: int, lease_deadline: float) -> list[Any]:
        """The ``ARGV`` of ``scripts.POP``."""
        return [count, lease_deadline, self.lifetime_s(lease_deadline)]

    async def pop_script(self) -> tuple[str, str]:
        """The SHA1 that ``EVALSHA`` runs ``scripts.POP`` by, and its source, for this server."""
        flags = await scripts.server_reads_flags(self.redis)
        return scripts.POP.sha(flags), scripts.POP.source(flags)

    def lifetime_s(self, until: float) -> int:
        """How long the worker's keys must last for a message that may live until ``until``.

        A message put back on the channel then lives at most the layer's ``expiry`` more.
        """
        return math.ceil(max(0.0, until - time.time()) + self.expiry_s)

    async def give_back(self, members: Sequence[bytes]) -> None:
        """Return unstarted messages to the head of the channel, in order, releasing leases."""
        if members:
            await scripts.run(
                self.redis,
                scripts.GIVE_BACK,
                [self.key, self.keys.inflight],
                [time.time(), self.expiry_s, *members],
            )

    async def extend(self, members: Sequence[bytes], lease_deadline: float) -> None:
        """Push the leases of messages still held by this worker to ``lease_deadline``."""
        if members:
            keys = self.keys
            await scripts.run(
                self.redis,
                scripts.EXTEND,
                [keys.inflight, keys.attempts, keys.first_attempt],
                [lease_deadline, self.lifetime_s(lease_deadline), *members],
            )

    async def settle(self, members: Sequence[bytes], retried: Sequence[bytes] = ()) -> None:
        """Forget finished messages: their leases, and the attempt records of ``retried`` ones.

        Most messages succeed first time and have no attempt records, so those writes are
        skipped for them.
        """
        if not members:
            return
        keys = self.keys
        if not retried:
            await self.redis.zrem(keys.inflight, *members)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(keys.inflight, *members)
            pipe.hdel(keys.attempts, *retried)
            pipe.hdel(keys.first_attempt, *retried)
            await pipe.execute()

    async def schedule_retry(self, member: bytes, due_at: float, first_attempt_at: float) -> None:
        """Move a failed message to the delayed set, counting the attempt."""
        keys = self.keys
        await scripts.run(
            self.redis,
            scripts.SCHEDULE_RETRY,
            [keys.inflight, keys.delayed, keys.attempts, keys.first_attempt],
            [member, due_at, first_attempt_at, self.lifetime_s(due_at)],
        )

    async def promote_due(self) -> int:
        """Move retries whose delay has passed back to the head of the channel."""
        count: Any = await scripts.run(
            self.redis,
            scripts.PROMOTE_DUE,
            [self.key, self.keys.delayed],
            [time.time(), self.expiry_s, MAINTENANCE_BATCH],
        )
        return int(count)

    async def requeue_expired(self) -> list[bytes]:
        """Put back messages whose lease ran out (their worker died), counting the attempt."""
        keys = self.keys
        members: Any = await scripts.run(
            self.redis,
            scripts.REQUEUE_EXPIRED,
            [keys.queue, keys.inflight, keys.attempts, keys.first_attempt],
            [time.time(), self.expiry_s, MAINTENANCE_BATCH],
        )
        return list(members)

    async def depth(self) -> int:
        return int(await self.redis.zcard(self.key))


def parse_pop(reply: Any) -> tuple[list[Popped], int]:
    """The messages in a reply of ``scripts.POP``, and how many were left on the channel."""
    pairs, records, remaining = reply
    popped = [Popped(pairs[i], float(pairs[i + 1])) for i in range(0, len(pairs), 2)]
    # Only retried or redelivered messages have attempt records; see scripts.POP.
    for i in range(0, len(records), 3):
        index = int(records[i]) - 1
        popped[index] = replace(
            popped[index],
            previous_attempts=int(records[i + 1]),
            first_attempt_at=float_or_none(records[i + 2]),
        )
    return popped, int(remaining)


def float_or_none(value: Any) -> float | None:
    """A float from a Redis reply, None for a missing or empty one."""
    return float(value) if value else None
