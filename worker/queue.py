"""Redis operations on one channel's sorted set, in channels-redis's own format.

channels-redis stores a general channel as a sorted set ``<prefix><channel>`` on every host,
members being serialised messages scored by their send time. Senders trim members older than
``expiry`` on each send and expire the key ``expiry`` seconds after the last send.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Put members back ahead of everything queued, re-scored inside the unexpired window so a
# sender's trim cannot drop them, and keep the key alive: one atomic step.
# KEYS[1] channel key; ARGV: now, expiry, then member, member, ... in delivery order.
_RETURN_SCRIPT = """
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local count = #ARGV - 2
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local first = now
if head[2] and tonumber(head[2]) < first then first = tonumber(head[2]) end
-- Senders trim scores <= floor(now) - expiry; stay a second clear of that edge.
local step = 0.00001
local base = math.max(first - count * step, math.floor(now) - expiry + 1)
for i = 1, count do
    redis.call('ZADD', KEYS[1], base + (i - 1) * step, ARGV[i + 2])
end
redis.call('EXPIRE', KEYS[1], expiry)
return count
"""


@dataclass(frozen=True, slots=True)
class Popped:
    """A raw message taken off a channel: its serialised bytes and send-time score."""

    member: bytes
    score: float


class ChannelQueue:
    """One channel's key on one layer host."""

    def __init__(self, redis: Redis, key: str, expiry_s: int) -> None:
        self.redis = redis
        self.key = key
        self.expiry_s = expiry_s
        self._return = redis.register_script(_RETURN_SCRIPT)

    async def pop(self, count: int) -> list[Popped]:
        """Take up to ``count`` of the oldest messages without waiting."""
        pairs: Any = await self.redis.zpopmin(self.key, count)
        return [Popped(member, float(score)) for member, score in pairs]

    async def wait_pop(self, timeout_s: float) -> Popped | None:
        """Take the oldest message, waiting up to ``timeout_s`` for one to arrive."""
        result: Any = await self.redis.bzpopmin(self.key, timeout=timeout_s)
        if result is None:
            return None
        _, member, score = result
        return Popped(member, float(score))

    async def give_back(self, members: Sequence[bytes]) -> None:
        """Return messages to the head of the channel, in the given order."""
        if members:
            await self._return(keys=[self.key], args=[time.time(), self.expiry_s, *members])

    async def depth(self) -> int:
        return int(await self.redis.zcard(self.key))
