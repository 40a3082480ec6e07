"""Redis operations on one channel on one layer host, in channels-redis's own format.

channels-redis stores a general channel as a sorted set ``<prefix><channel>`` on every host,
members being serialised messages scored by their send time. Senders trim members older than
``expiry`` on each send and expire the key ``expiry`` seconds after the last send. That key
holds the messages of priority 0; other priorities have a sorted set each, in the same format on
the same host, listed in a small index (``transport/lua/levels.lua``).
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
    #: The priority level it was queued at; one not at 0 taken under a lease has a level record
    #: until settled.
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Promoted:
    """What one promotion of due retries and deferred sends did, and when the next is due."""

    count: int
    #: When the earliest message still waiting is due (epoch seconds), None when none waits.
    next_due_at: float | None


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
        return [
            keys.queue,
            keys.inflight,
            keys.attempts,
            keys.first_attempt,
            keys.levels,
            keys.member_levels,
        ]

    def pop_args(self, count: int, lease_deadline: float) -> list[Any]:
        """The ``ARGV`` of ``scripts.POP``."""
        return [count, lease_deadline, self.lifetime_s(lease_deadline), self.keys.level_prefix]

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
                [self.key, self.keys.inflight, self.keys.levels, self.keys.member_levels],
                [time.time(), self.expiry_s, self.keys.level_prefix, *members],
            )

    async def extend(self, members: Sequence[bytes], lease_deadline: float) -> None:
        """Push the leases of messages still held by this worker to ``lease_deadline``."""
        if members:
            keys = self.keys
            await scripts.run(
                self.redis,
                scripts.EXTEND,
                [keys.inflight, keys.attempts, keys.first_attempt, keys.member_levels],
                [lease_deadline, self.lifetime_s(lease_deadline), *members],
            )

    async def settle(self, members: Sequence[bytes], retried: Sequence[bytes] = ()) -> None:
        """Forget finished messages: their leases, and the records of ``retried`` ones.

        Most messages succeed first time at priority 0 and have no attempt or level records, so
        those writes are skipped for them; ``retried`` names the others.
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
            pipe.hdel(keys.member_levels, *retried)
            await pipe.execute()

    async def schedule_retry(
        self, member: bytes, due_at: float, first_attempt_at: float, level: int = 0
    ) -> None:
        """Move a failed message to the delayed set, counting the attempt; it returns to its
        priority ``level`` when due."""
        keys = self.keys
        await scripts.run(
            self.redis,
            scripts.SCHEDULE_RETRY,
            [keys.inflight, keys.delayed, keys.attempts, keys.first_attempt, keys.member_levels],
            [member, due_at, first_attempt_at, self.lifetime_s(due_at), level],
        )

    async def promote_due(self) -> Promoted:
        """Move retries whose delay has passed back to the head of their priority level."""
        keys = self.keys
        reply: Any = await scripts.run(
            self.redis,
            scripts.PROMOTE_DUE,
            [self.key, keys.delayed, keys.levels, keys.member_levels],
            [time.time(), self.expiry_s, MAINTENANCE_BATCH, keys.level_prefix],
        )
        count, earliest = reply
        # A Lua false comes back as None (or False, were the script to speak RESP3).
        next_due_at = None if earliest is None or earliest is False else float(earliest)
        return Promoted(int(count), next_due_at)

    async def requeue_expired(self) -> list[bytes]:
        """Put back messages whose lease ran out (their worker died), counting the attempt."""
        keys = self.keys
        members: Any = await scripts.run(
            self.redis,
            scripts.REQUEUE_EXPIRED,
            [
                keys.queue,
                keys.inflight,
                keys.attempts,
                keys.first_attempt,
                keys.levels,
                keys.member_levels,
            ],
            [time.time(), self.expiry_s, MAINTENANCE_BATCH, keys.level_prefix],
        )
        return list(members)

    async def depth(self) -> int:
        """Messages queued at every priority level."""
        return sum(await queued_by_level(self.redis, self.keys))


async def queued_and_oldest(redis: Redis, keys: ChannelKeys) -> tuple[int, float | None]:
    """How many messages a channel holds on one host at every priority level, and the send
    time of the oldest of them (None when there are none)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.queue)
        pipe.zrange(keys.queue, 0, 0, withscores=True)
        pipe.zrange(keys.levels, 0, -1)
        queued, head, levels = await pipe.execute()
    replies: list[Any] = [queued, head]
    if levels:
        async with redis.pipeline(transaction=False) as pipe:
            for level in levels:
                pipe.zcard(keys.level_key(int(level)))
                pipe.zrange(keys.level_key(int(level)), 0, 0, withscores=True)
            replies += await pipe.execute()
    scores = [float(head[0][1]) for head in replies[1::2] if head]
    return sum(int(count) for count in replies[0::2]), min(scores, default=None)


async def queued_by_level(redis: Redis, keys: ChannelKeys) -> list[int]:
    """How many messages each priority level of a channel holds on one host (0 first)."""
    levels: Any = await redis.zrange(keys.levels, 0, -1)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.queue)
        for level in levels:
            pipe.zcard(keys.level_key(int(level)))
        counts: Any = await pipe.execute()
    return [int(count) for count in counts]


def parse_pop(reply: Any) -> tuple[list[Popped], int]:
    """The messages in a reply of ``scripts.POP``, and how many were left on the channel."""
    pairs, records, remaining, levels = reply
    popped = [Popped(pairs[i], float(pairs[i + 1])) for i in range(0, len(pairs), 2)]
    # Only messages of a priority other than 0 have a level in the reply.
    for i in range(0, len(levels), 2):
        index = int(levels[i]) - 1
        popped[index] = replace(popped[index], priority=int(levels[i + 1]))
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
