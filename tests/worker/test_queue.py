"""``ChannelQueue`` against a real redis-server, in channels-redis's own format."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer
from redis.asyncio import Redis

from tests.worker._inprocess import channel_key
from worker.transport.keys import ChannelKeys
from worker.transport.pop_connection import PopConnection
from worker.transport.queue import ChannelQueue, Popped

pytestmark = pytest.mark.redis

EXPIRY_S = 60


@pytest.fixture
async def layer(redis_url: str) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(hosts=[redis_url], expiry=EXPIRY_S)
    yield layer
    await layer.close_pools()


@pytest.fixture
def queue(redis: Redis, layer: RedisChannelLayer) -> ChannelQueue:
    return ChannelQueue(redis, ChannelKeys.for_channel(layer.prefix, "jobs"), EXPIRY_S)


def member(layer: RedisChannelLayer, number: int) -> bytes:
    """A message serialised exactly as ``layer.send`` stores it."""
    serialized: bytes = layer.serialize({"type": "job.run", "n": number})
    return serialized


async def pop(queue: ChannelQueue, count: int, lease_deadline: float = 0.0) -> list[Popped]:
    """Pop as a poller does, on a connection of its own."""
    popper = PopConnection(queue)
    try:
        return (await popper.pop(count, lease_deadline))[0]
    finally:
        await popper.aclose()


async def queued(redis: Redis, layer: RedisChannelLayer) -> list[tuple[int, float]]:
    """The channel's messages, head first, as (number, score)."""
    pairs: Any = await redis.zrange(channel_key(layer, "jobs"), 0, -1, withscores=True)
    return [(layer.deserialize(raw)["n"], score) for raw, score in pairs]


async def test_give_back_puts_members_at_the_head_in_order(
    layer: RedisChannelLayer, redis: Redis, queue: ChannelQueue
) -> None:
    await layer.send("jobs", {"type": "job.run", "n": 10})
    await layer.send("jobs", {"type": "job.run", "n": 11})
    await queue.give_back([member(layer, 0), member(layer, 1), member(layer, 2)])
    assert [number for number, _ in await queued(redis, layer)] == [0, 1, 2, 10, 11]


async def test_give_back_of_popped_messages_restores_their_order(
    layer: RedisChannelLayer, redis: Redis, queue: ChannelQueue
) -> None:
    for number in range(6):
        await layer.send("jobs", {"type": "job.run", "n": number})
    popped = await pop(queue, 3)
    await queue.give_back([item.member for item in popped])
    assert [number for number, _ in await queued(redis, layer)] == [0, 1, 2, 3, 4, 5]


async def test_give_back_rescores_old_messages_inside_the_unexpired_window(
    layer: RedisChannelLayer, redis: Redis, queue: ChannelQueue
) -> None:
    # Sent long ago: a sender's trim would drop them if they went back with their own scores.
    old = time.time() - EXPIRY_S - 300
    key = channel_key(layer, "jobs")
    await redis.zadd(key, {member(layer, 0): old, member(layer, 1): old + 1})
    popped = await pop(queue, 2)
    assert [item.score for item in popped] == [old, old + 1]
    await queue.give_back([item.member for item in popped])
    scores = [score for _, score in await queued(redis, layer)]
    assert len(scores) == 2
    assert all(score > time.time() - EXPIRY_S for score in scores)
    assert scores[0] < scores[1]


async def test_give_back_stays_inside_the_window_behind_a_stale_head(
    layer: RedisChannelLayer, redis: Redis, queue: ChannelQueue
) -> None:
    # A message older than the expiry still sits at the head; the next send trims it.
    key = channel_key(layer, "jobs")
    await redis.zadd(key, {member(layer, 99): time.time() - EXPIRY_S - 300})
    await queue.give_back([member(layer, 0), member(layer, 1)])
    returned = [(number, score) for number, score in await queued(redis, layer) if number != 99]
    assert [number for number, _ in returned] == [0, 1]
    assert all(score > time.time() - EXPIRY_S for _, score in returned)


async def test_a_later_send_neither_trims_returned_messages_nor_overtakes_them(
    layer: RedisChannelLayer, redis: Redis, queue: ChannelQueue
) -> None:
    key = channel_key(layer, "jobs")
    old = time.time() - EXPIRY_S - 300
    await redis.zadd(key, {member(layer, 0): old, member(layer, 1): old + 1})
    await redis.zadd(key, {member(layer, 99): old})
    popped = await pop(queue, 3)
    # Return only the two real messages; the stale 99 stays behind to be trimmed.
    await queue.give_back(
        [item.member for item in popped if layer.deserialize(item.member)["n"] != 99]
    )
    await redis.zadd(key, {member(layer, 98): old})
    # channels-redis's send trims everything older than its expiry before adding.
    await layer.send("jobs", {"type": "job.run", "n": 2})
    assert [number for number, _ in await queued(redis, layer)] == [0, 1, 2]
    # The layer's own receive gets the returned messages before the newer one.
    received = [(await layer.receive("jobs"))["n"] for _ in range(3)]
    assert received == [0, 1, 2]


async def test_give_back_refreshes_the_channel_expiry(
    layer: RedisChannelLayer, redis: Redis, queue: ChannelQueue
) -> None:
    await layer.send("jobs", {"type": "job.run", "n": 5})
    key = channel_key(layer, "jobs")
    await redis.expire(key, 3)
    await queue.give_back([member(layer, 0)])
    assert EXPIRY_S - 5 <= await redis.ttl(key) <= EXPIRY_S


async def test_give_back_to_an_empty_channel_sets_its_expiry(
    layer: RedisChannelLayer, redis: Redis, queue: ChannelQueue
) -> None:
    await queue.give_back([member(layer, 0)])
    assert EXPIRY_S - 5 <= await redis.ttl(channel_key(layer, "jobs")) <= EXPIRY_S


async def test_give_back_of_nothing_leaves_the_channel_alone(
    redis: Redis, layer: RedisChannelLayer, queue: ChannelQueue
) -> None:
    await queue.give_back([])
    assert await redis.exists(channel_key(layer, "jobs")) == 0


async def test_give_back_releases_leases(
    layer: RedisChannelLayer, redis: Redis, queue: ChannelQueue
) -> None:
    for number in range(2):
        await layer.send("jobs", {"type": "job.run", "n": number})
    popped = await pop(queue, 2, lease_deadline=time.time() + 30)
    inflight_key = ChannelKeys.for_channel(layer.prefix, "jobs").inflight
    assert await redis.zcard(inflight_key) == 2
    await queue.give_back([item.member for item in popped])
    assert await redis.zcard(inflight_key) == 0
    assert [number for number, _ in await queued(redis, layer)] == [0, 1]
