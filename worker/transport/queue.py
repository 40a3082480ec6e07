"""Redis operations on one channel on one layer host, in channels-redis's own format.

channels-redis stores a general channel as a sorted set ``<prefix><channel>`` on every host,
members being serialised messages scored by their send time. Senders trim members older than
``expiry`` on each send and expire the key ``expiry`` seconds after the last send.
"""

from __future__ import annotations

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
        self._pop = redis.register_script(scripts.POP)
        self._give_back = redis.register_script(scripts.GIVE_BACK)
        self._requeue_expired = redis.register_script(scripts.REQUEUE_EXPIRED)
        self._schedule_retry = redis.register_script(scripts.SCHEDULE_RETRY)
        self._promote_due = redis.register_script(scripts.PROMOTE_DUE)

    def pop_keys(self) -> list[str]:
        """The ``KEYS`` of ``scripts.POP``, which a poller runs (``pop_connection``)."""
        keys = self.keys
        return [keys.queue, keys.inflight, keys.attempts, keys.first_attempt]

    @property
    def pop_sha(self) -> str:
        """The SHA1 that ``EVALSHA`` runs ``scripts.POP`` by."""
        sha: str = self._pop.sha
        return sha

    async def give_back(self, members: Sequence[bytes]) -> None:
        """Return unstarted messages to the head of the channel, in order, releasing leases."""
        if members:
            await self._give_back(
                keys=[self.key, self.keys.inflight],
                args=[time.time(), self.expiry_s, *members],
            )

    async def extend(self, members: Sequence[bytes], lease_deadline: float) -> None:
        """Push the leases of messages still held by this worker to ``lease_deadline``."""
        if members:
            await self.redis.zadd(
                self.keys.inflight, dict.fromkeys(members, lease_deadline), xx=True
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
        await self._schedule_retry(
            keys=[keys.inflight, keys.delayed, keys.attempts, keys.first_attempt],
            args=[member, due_at, first_attempt_at],
        )

    async def promote_due(self) -> int:
        """Move retries whose delay has passed back to the head of the channel."""
        count: Any = await self._promote_due(
            keys=[self.key, self.keys.delayed],
            args=[time.time(), self.expiry_s, MAINTENANCE_BATCH],
        )
        return int(count)

    async def requeue_expired(self) -> list[bytes]:
        """Put back messages whose lease ran out (their worker died), counting the attempt."""
        keys = self.keys
        members: Any = await self._requeue_expired(
            keys=[keys.queue, keys.inflight, keys.attempts, keys.first_attempt],
            args=[time.time(), self.expiry_s, MAINTENANCE_BATCH],
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
