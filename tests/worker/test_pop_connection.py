"""``worker.transport.pop_connection.PopConnection``: a poller's pops on a connection of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from channels_redis.core import RedisChannelLayer
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from worker.transport.connection import call
from worker.transport.keys import ChannelKeys
from worker.transport.pop_connection import PopConnection
from worker.transport.queue import ChannelQueue

pytestmark = pytest.mark.redis


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
async def popper(
    request: pytest.FixtureRequest, redis_url: str, layer: RedisChannelLayer
) -> AsyncIterator[PopConnection]:
    """Pops of channel "jobs", over each protocol: replies differ in shape between them."""
    client = Redis.from_url(redis_url, protocol=request.param)
    popper = PopConnection(ChannelQueue(client, ChannelKeys.for_channel(layer.prefix, "jobs"), 60))
    yield popper
    await popper.aclose()
    await client.aclose()


async def send(layer: RedisChannelLayer, count: int) -> None:
    for number in range(count):
        await layer.send("jobs", {"type": "job.run", "n": number})


async def test_pop_says_how_many_messages_are_left(
    layer: RedisChannelLayer, popper: PopConnection
) -> None:
    await send(layer, 5)
    popped, remaining = await popper.pop(3, lease_deadline=time.time() + 30)
    assert [layer.deserialize(item.member)["n"] for item in popped] == [0, 1, 2]
    assert all(item.previous_attempts == 0 for item in popped)
    assert popped[0].score <= popped[1].score <= popped[2].score
    assert remaining == 2 == await popper.queue.depth()
    popped, remaining = await popper.pop(10)
    assert [layer.deserialize(item.member)["n"] for item in popped] == [3, 4]
    assert remaining == 0
    assert await popper.pop(10) == ([], 0)


async def test_pops_use_one_connection_of_their_own(
    layer: RedisChannelLayer, popper: PopConnection
) -> None:
    await send(layer, 2)
    await popper.pop(1)
    own_id = await call(popper.connection, "CLIENT", "ID")
    # Not lent by the client's pool: its own commands run on another connection.
    assert await popper.queue.redis.client_id() != own_id
    await popper.pop(1)
    assert await call(popper.connection, "CLIENT", "ID") == own_id


async def test_a_killed_connection_fails_one_pop_and_the_next_reconnects(
    layer: RedisChannelLayer, redis: Redis, popper: PopConnection
) -> None:
    await popper.pop(1)
    assert await redis.client_kill_filter(_id=await call(popper.connection, "CLIENT", "ID")) == 1
    await send(layer, 1)
    with pytest.raises(RedisConnectionError):
        await popper.pop(1)
    popped, _ = await popper.pop(1)
    assert [layer.deserialize(item.member)["n"] for item in popped] == [0]


async def test_the_script_is_loaded_again_after_the_server_forgot_it(
    layer: RedisChannelLayer, redis: Redis, popper: PopConnection
) -> None:
    await popper.pop(1)
    await redis.script_flush()
    await send(layer, 1)
    popped, remaining = await popper.pop(1)
    assert [layer.deserialize(item.member)["n"] for item in popped] == [0]
    assert remaining == 0


async def test_wait_pop_returns_a_message_sent_while_waiting(
    layer: RedisChannelLayer, popper: PopConnection
) -> None:
    waiting = asyncio.create_task(popper.wait_pop(5.0))
    await layer.send("jobs", {"type": "job.run", "n": 9})
    popped = await asyncio.wait_for(waiting, 5)
    assert popped is not None
    assert layer.deserialize(popped.member) == {"type": "job.run", "n": 9}
    assert (popped.previous_attempts, popped.first_attempt_at) == (0, None)


async def test_wait_pop_returns_none_after_its_timeout(popper: PopConnection) -> None:
    started = time.monotonic()
    assert await popper.wait_pop(0.2) is None
    assert 0.1 < time.monotonic() - started < 3


async def test_wait_pop_brings_the_attempts_of_a_redelivered_message(
    layer: RedisChannelLayer, redis: Redis, popper: PopConnection
) -> None:
    await send(layer, 2)
    keys = popper.queue.keys
    second = (await redis.zrange(keys.queue, 1, 1))[0]
    assert isinstance(second, bytes)
    await redis.hset(keys.attempts, second, 2)
    await redis.hset(keys.first_attempt, second, 1700000000.5)
    first_popped = await popper.wait_pop(1.0)
    assert first_popped is not None
    assert (first_popped.previous_attempts, first_popped.first_attempt_at) == (0, None)
    again = await popper.wait_pop(1.0)
    assert again is not None
    assert (again.member, again.previous_attempts, again.first_attempt_at) == (
        second,
        2,
        1700000000.5,
    )
