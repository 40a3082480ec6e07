"""Task priority: every level of a channel's queue, from the send to the pop and back again."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis as sync_redis
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.utils import timezone
from redis.asyncio import Redis

from tests.redis_server import RedisServer
from tests.worker._inprocess import Probe, channel_app, looping_app, make_worker, running
from tests.worker._inprocess import wait_until as wait_until_in_loop
from tests.worker.process_helpers import wait_until
from tests.worker.send_project import project_settings, start_runworker
from tests.worker.tasks_project.tasks import add, fail, flaky, slow
from tests.worker.test_redis_limits import limited_server as redis6_and_7
from tests.worker.test_redis_limits import out_of_memory_now
from worker.config import ChannelConfig
from worker.errors import RedisOutOfMemory
from worker.ops.health import sample_channel
from worker.sending.pools import AsyncSender
from worker.tasks.compat import InvalidTask, TaskResult, TaskResultStatus
from worker.testing.drain import drain
from worker.transport.dead_letters import DeadLetter, DeadLetters
from worker.transport.keys import ChannelKeys
from worker.transport.pop_connection import PopConnection
from worker.transport.queue import ChannelQueue, Popped

pytestmark = pytest.mark.redis
#: A redis-server of the test's own: today's, and Redis 6 (which runs scripts without flags).
full_redis = redis6_and_7

EXPIRY_S = 60
CHANNEL = "jobs"
TASKS = "tasks.default"
#: One task at a time, so the order tasks start in is the order they were taken in.
IN_ORDER = ChannelConfig(concurrency=1, max_attempts=1)


@pytest.fixture
async def layer(redis_url: str) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(hosts=[redis_url], expiry=EXPIRY_S, capacity=100)
    yield layer
    await layer.close_pools()


@pytest.fixture
def keys(layer: RedisChannelLayer) -> ChannelKeys:
    return ChannelKeys.for_channel(layer.prefix, CHANNEL)


@pytest.fixture
def queue(redis: Redis, keys: ChannelKeys) -> ChannelQueue:
    return ChannelQueue(redis, keys, EXPIRY_S)


@pytest.fixture
async def sender(layer: RedisChannelLayer) -> AsyncIterator[AsyncSender]:
    sender = AsyncSender(layer)
    yield sender
    await sender.aclose()


async def send(
    sender: AsyncSender, layer: RedisChannelLayer, name: str, priority: int | None
) -> bool:
    member = layer.serialize({"type": "job.run", "name": name})
    return await sender.send(CHANNEL, member, 100, priority) is not None


async def pop(queue: ChannelQueue, count: int, lease_deadline: float = 0.0) -> list[Popped]:
    popper = PopConnection(queue)
    try:
        return (await popper.pop(count, lease_deadline))[0]
    finally:
        await popper.aclose()


def names(layer: RedisChannelLayer, popped: list[Popped]) -> list[str]:
    return [layer.deserialize(item.member)["name"] for item in popped]


# The queue's levels, in Redis


async def test_pop_takes_higher_priorities_first_and_keeps_order_within_a_level(
    layer: RedisChannelLayer, sender: AsyncSender, queue: ChannelQueue, redis: Redis
) -> None:
    for name, priority in [("a0", 0), ("b5", 5), ("c-5", -5), ("d5", 5), ("e0", 0), ("f10", 10)]:
        assert await send(sender, layer, name, priority)
    await send(sender, layer, "g-5", -5)
    # Priority 0 stays in the channel key itself, where channels-redis's own receive reads it.
    assert await redis.zcard(queue.keys.queue) == 2
    assert await queue.depth() == 7
    first = await pop(queue, 2)
    assert names(layer, first) == ["f10", "b5"]
    assert [item.priority for item in first] == [10, 5]
    rest = await pop(queue, 10)
    assert names(layer, rest) == ["d5", "a0", "e0", "c-5", "g-5"]
    assert [item.priority for item in rest] == [5, 0, 0, -5, -5]
    # Empty levels leave the index, and without a lease their records go at once.
    assert not await redis.exists(queue.keys.levels, queue.keys.member_levels)


async def test_a_message_given_back_returns_to_the_head_of_its_own_level(
    layer: RedisChannelLayer, sender: AsyncSender, queue: ChannelQueue
) -> None:
    await send(sender, layer, "high", 5)
    await send(sender, layer, "plain", None)
    taken = await pop(queue, 2, lease_deadline=time.time() + 30)
    assert names(layer, taken) == ["high", "plain"]
    await send(sender, layer, "later-high", 5)
    await send(sender, layer, "later-plain", 0)
    await queue.give_back([item.member for item in taken])
    again = await pop(queue, 10, lease_deadline=time.time() + 30)
    assert names(layer, again) == ["high", "later-high", "plain", "later-plain"]


async def test_redelivery_and_retry_keep_the_level(
    layer: RedisChannelLayer, sender: AsyncSender, queue: ChannelQueue, redis: Redis
) -> None:
    await send(sender, layer, "high", 7)
    await send(sender, layer, "plain", 0)
    (high,) = await pop(queue, 1, lease_deadline=time.time() - 1)
    # Its worker died: the lease ran out.
    assert await queue.requeue_expired() == [high.member]
    (again,) = await pop(queue, 1, lease_deadline=time.time() + 30)
    assert (names(layer, [again]), again.priority, again.previous_attempts) == (["high"], 7, 1)
    # It failed: retried after a backoff, from the delayed set, at its own level.
    await queue.schedule_retry(again.member, time.time() - 1, time.time())
    assert (await queue.promote_due()).count == 1
    assert await redis.zcard(queue.keys.level_key(7)) == 1
    (retried,) = await pop(queue, 1, lease_deadline=time.time() + 30)
    assert names(layer, [retried]) == ["high"]
    assert (retried.priority, retried.previous_attempts) == (7, 2)
    # Acknowledged: its lease and every record of it go.
    await queue.settle([retried.member], [retried.member])
    assert not await redis.hexists(queue.keys.member_levels, retried.member)
    assert not await redis.exists(queue.keys.inflight)


async def test_capacity_counts_every_level(
    layer: RedisChannelLayer, sender: AsyncSender, redis: Redis, keys: ChannelKeys
) -> None:
    member = layer.serialize({"type": "job.run"})
    assert await sender.send(CHANNEL, member + b"1", 2, 3) is not None
    assert await sender.send(CHANNEL, member + b"2", 2, None) is not None
    # Full at either level, the plain send included.
    assert await sender.send(CHANNEL, member + b"3", 2, None) is None
    assert await sender.send(CHANNEL, member + b"4", 2, -3) is None
    assert await redis.zcard(keys.queue) == 1
    assert await redis.zcard(keys.level_key(3)) == 1


async def test_level_keys_expire_with_the_layer(
    layer: RedisChannelLayer, sender: AsyncSender, queue: ChannelQueue, redis: Redis
) -> None:
    keys = queue.keys
    await send(sender, layer, "high", 9)
    for key in (keys.level_key(9), keys.levels):
        assert 0 < await redis.ttl(key) <= EXPIRY_S
    # Taken under a lease, its level is recorded as long as the lease and its records last.
    await send(sender, layer, "other", 9)
    await pop(queue, 1, lease_deadline=time.time() + 30)
    assert EXPIRY_S < await redis.ttl(keys.member_levels) <= 30 + EXPIRY_S


async def test_a_level_key_drops_what_the_layer_would_have_dropped(
    layer: RedisChannelLayer, sender: AsyncSender, redis: Redis, keys: ChannelKeys
) -> None:
    old = layer.serialize({"type": "job.run", "name": "old"})
    await redis.zadd(keys.level_key(4), {old: time.time() - EXPIRY_S - 5})
    await send(sender, layer, "new", 4)
    assert await redis.zrange(keys.level_key(4), 0, -1) != [old]
    assert await redis.zcard(keys.level_key(4)) == 1


async def test_level_records_do_not_outlive_messages_the_layer_expired(
    layer: RedisChannelLayer, sender: AsyncSender, queue: ChannelQueue, redis: Redis
) -> None:
    keys = queue.keys

    async def level_key_gone() -> bool:
        return not await redis.exists(keys.level_key(5))

    for round_ in range(5):
        for i in range(10):
            await send(sender, layer, f"stale-{round_}-{i}", 5)
        (given_back,) = await pop(queue, 1, lease_deadline=time.time() + 30)
        await queue.give_back([given_back.member])
        # Nobody takes them before the layer's expiry runs out on their level's key...
        await redis.pexpire(keys.level_key(5), 1)
        await wait_until_in_loop(level_key_gone, what="the level's key expired")
        # ...while tasks of another priority keep flowing, leased and acknowledged.
        await send(sender, layer, f"busy-{round_}", 3)
        (busy,) = await pop(queue, 1, lease_deadline=time.time() + 30)
        assert busy.priority == 3
        await queue.settle([busy.member], [busy.member])
    assert await redis.hlen(keys.member_levels) == 0
    # The pops found the expired level's key gone and took it out of the index.
    assert not await redis.exists(keys.levels)


async def test_level_records_are_kept_only_while_leased_or_delayed(
    layer: RedisChannelLayer, sender: AsyncSender, queue: ChannelQueue, redis: Redis
) -> None:
    keys = queue.keys
    for name, priority in [("a", 4), ("b", -4), ("c", 4)]:
        await send(sender, layer, name, priority)
    # Queued, a message's level is the key it is in.
    assert not await redis.exists(keys.member_levels)
    taken = await pop(queue, 3, lease_deadline=time.time() + 30)
    assert await redis.hlen(keys.member_levels) == 3
    await queue.give_back([item.member for item in taken])
    assert not await redis.exists(keys.member_levels)
    died = await pop(queue, 3, lease_deadline=time.time() - 1)
    assert len(await queue.requeue_expired()) == 3
    assert not await redis.exists(keys.member_levels)
    (first, *_) = await pop(queue, 3, lease_deadline=time.time() + 30)
    await queue.schedule_retry(first.member, time.time() - 1, time.time())
    assert await redis.hget(keys.member_levels, first.member) == b"4"
    assert (await queue.promote_due()).count == 1
    assert await redis.hlen(keys.member_levels) == 2
    assert [item.priority for item in died] == [4, 4, -4]


async def test_a_send_to_a_level_the_last_pop_emptied_wakes_the_idle_worker(
    full_redis: RedisServer,
) -> None:
    layer = RedisChannelLayer(hosts=[full_redis.url], expiry=EXPIRY_S)
    sender = AsyncSender(layer)
    probe = Probe()
    # Far longer than any wait below: a message handled sooner was woken by a notice.
    worker = make_worker(
        channel_app({CHANNEL: looping_app(probe)}), [CHANNEL], layer, poll_timeout_s=60.0
    )
    async with running(worker):
        for round_ in range(3):
            # Each send finds the poller idle: the pop before emptied the level and the index.
            member = layer.serialize({"type": "job.run", "n": round_})
            assert await sender.send(CHANNEL, member, 100, 5) is not None
            await wait_until_in_loop(
                lambda: len(probe.finished) == round_ + 1,  # noqa: B023
                what=f"message {round_} handled",
            )
    await sender.aclose()
    await layer.close_pools()
    assert probe.finished == [0, 1, 2]


async def test_status_counts_every_level_and_their_oldest(
    layer: RedisChannelLayer, sender: AsyncSender, redis: Redis, keys: ChannelKeys
) -> None:
    oldest = layer.serialize({"type": "job.run", "name": "oldest"})
    await redis.zadd(keys.level_key(-2), {oldest: time.time() - 30})
    await redis.zadd(keys.levels, {"-2": -2})
    await send(sender, layer, "plain", None)
    await send(sender, layer, "high", 2)
    sample = await sample_channel([redis], keys)
    assert sample.queued == 3
    assert 29 < sample.oldest_age_s(time.time()) < 40


async def test_a_dead_letter_is_requeued_at_its_level(
    layer: RedisChannelLayer, sender: AsyncSender, queue: ChannelQueue, redis: Redis
) -> None:
    await send(sender, layer, "high", 6)
    (high,) = await pop(queue, 1, lease_deadline=time.time() + 30)
    letters = DeadLetters(layer, [redis])
    await letters.add(DeadLetter(CHANNEL, "failed", 1), high.member)
    assert not await redis.exists(queue.keys.member_levels, queue.keys.inflight)
    assert await letters.requeue(CHANNEL) == 1
    (again,) = await pop(queue, 1, lease_deadline=time.time() + 30)
    assert (names(layer, [again]), again.priority) == (["high"], 6)
    assert not await redis.exists(queue.keys.dead_levels)


# Tasks, through the worker's real path


def started_order(results: list[TaskResult[..., Any]]) -> list[int]:
    """The priorities of ``results`` in the order they started."""
    refreshed = [add.get_result(result.id) for result in results]
    assert all(result.status == TaskResultStatus.SUCCESSFUL for result in refreshed)
    ordered = sorted(refreshed, key=lambda result: result.started_at or timezone.now())
    return [result.task.priority for result in ordered]


async def test_tasks_start_by_priority_then_in_enqueue_order(redis_url: str) -> None:
    with project_settings(redis_url):
        priorities = [0, -10, 10, 0, 100, -100, 10, 1]
        results = [await add.using(priority=p).aenqueue(i, 0) for i, p in enumerate(priorities)]
        stats = await drain([TASKS], config=IN_ORDER)
        assert stats.completed == len(priorities)
        ordered = [await add.aget_result(result.id) for result in results]
    ordered.sort(key=lambda result: result.started_at or timezone.now())
    assert [(r.task.priority, r.return_value) for r in ordered] == [
        (100, 4), (10, 2), (10, 6), (1, 7), (0, 0), (0, 3), (-10, 1), (-100, 5),
    ]  # fmt: skip


async def test_a_stream_of_high_priority_tasks_runs_before_a_waiting_low_one(
    redis_url: str,
) -> None:
    with project_settings(redis_url):
        low = await add.using(priority=-1).aenqueue(0, 0)
        high = [await add.using(priority=1).aenqueue(i, 0) for i in range(60)]
        await drain([TASKS], config=IN_ORDER)
        low_done = await add.aget_result(low.id)
        high_done = [await add.aget_result(result.id) for result in high]
    assert low_done.started_at is not None
    assert all(r.started_at is not None and r.started_at < low_done.started_at for r in high_done)


async def test_a_deferred_task_joins_its_level_when_due(redis_url: str) -> None:
    with project_settings(redis_url):
        due = timezone.now() + timedelta(hours=1)
        deferred = await add.using(priority=50, run_after=due).aenqueue(1, 1)
        waiting = [await add.aenqueue(i, 0) for i in range(3)]
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        keys = ChannelKeys.for_channel(layer.prefix, TASKS)
        client = layer.connection(0)
        (member,) = await client.zrange(keys.delayed, 0, -1)
        # The hour passes: its due time is now behind us.
        await client.zadd(keys.delayed, {member: time.time() - 1}, xx=True)
        assert (await ChannelQueue(client, keys, int(layer.expiry)).promote_due()).count == 1
        assert await client.zcard(keys.level_key(50)) == 1
        await drain([TASKS], config=IN_ORDER)
        done = [await add.aget_result(result.id) for result in [deferred, *waiting]]
        await layer.close_pools()
    first = min(done, key=lambda result: result.started_at or timezone.now())
    assert first.id == deferred.id


async def test_a_retried_task_keeps_its_priority_and_leaves_no_records(redis_url: str) -> None:
    with project_settings(redis_url):
        result = await flaky.using(priority=20).aenqueue(1)
        config = ChannelConfig(
            concurrency=1, max_attempts=2, retry_backoff_min_s=0.01, retry_backoff_max_s=0.01
        )
        stats = await drain([TASKS], config=config)
        done = await flaky.aget_result(result.id)
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        keys = ChannelKeys.for_channel(layer.prefix, TASKS)
        left = await layer.connection(0).exists(keys.member_levels, keys.levels, keys.inflight)
        await layer.close_pools()
    assert stats.retried == 1
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value["attempt"] == 2
    assert left == 0


async def test_a_failed_task_is_dead_lettered_and_requeued_at_its_priority(
    redis_url: str,
) -> None:
    with project_settings(redis_url):
        await fail.using(priority=-30).aenqueue("x")
        await drain([TASKS], config=IN_ORDER)
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        keys = ChannelKeys.for_channel(layer.prefix, TASKS)
        letters = DeadLetters(layer)
        assert await letters.requeue(TASKS) == 1
        await letters.aclose()
        queued = await layer.connection(0).zcard(keys.level_key(-30))
        await layer.close_pools()
    assert queued == 1


# Django's and the django-tasks backport's own priority tests (test_tasks.py), on this backend.


def test_a_priority_outside_djangos_range_gets_djangos_error(redis_url: str) -> None:
    message = "priority must be a whole number between -100 and 100"
    with project_settings(redis_url):
        for priority in (-101, 101, 3.1):
            with pytest.raises(InvalidTask, match=message):
                add.using(priority=priority)  # type: ignore[arg-type]
        for priority in (100, -100, 0):
            assert add.using(priority=priority).enqueue(1, 2).task.priority == priority


def test_using_sets_the_priority_of_a_new_task_only(redis_url: str) -> None:
    with project_settings(redis_url):
        now = timezone.now()
        assert add.priority == 0
        assert add.using(priority=1).priority == 1
        assert add.priority == 0
        run_after_task = add.using(run_after=now)
        priority_task = run_after_task.using(priority=10)
        assert (priority_task.priority, priority_task.run_after) == (10, now)
        assert run_after_task.priority == 0


# Several layer hosts


@pytest.fixture
def second_redis() -> Iterator[str]:
    server = RedisServer()
    server.start()
    yield server.url
    server.cleanup()


async def test_priority_holds_across_two_layer_hosts(redis_url: str, second_redis: str) -> None:
    with project_settings(redis_url, layer={"hosts": [redis_url, second_redis]}):
        priorities = [0, 3, -3, 3, 9, 0]
        results = [await add.using(priority=p).aenqueue(i, 0) for i, p in enumerate(priorities)]
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        keys = ChannelKeys.for_channel(layer.prefix, TASKS)
        # Every level of a task queue is on the host its channel name picks.
        home = int(layer.consistent_hash(TASKS))
        counts = [
            sum([await layer.connection(i).zcard(keys.level_key(p)) for p in (0, 3, -3, 9)])
            for i in range(2)
        ]
        assert counts[home] == len(priorities)
        await drain([TASKS], config=IN_ORDER)
        ordered = [await add.aget_result(result.id) for result in results]
        await layer.close_pools()
    ordered.sort(key=lambda result: result.started_at or timezone.now())
    assert [(r.task.priority, r.return_value) for r in ordered] == [
        (9, 4), (3, 1), (3, 3), (0, 0), (0, 5), (-3, 2),
    ]  # fmt: skip


# runworker


@pytest.mark.e2e
def test_sigterm_gives_unstarted_tasks_back_to_their_level(redis_url: str) -> None:
    with project_settings(redis_url), sync_redis.Redis.from_url(redis_url) as client:
        keys = ChannelKeys.for_channel("asgi", TASKS)
        running = slow.using(priority=0).enqueue(1.5)
        worker = start_runworker(redis_url, TASKS, "--concurrency", "1", "--prefetch", "2")
        try:
            wait_until(
                lambda: slow.get_result(running.id).status == TaskResultStatus.RUNNING,
                "the slow task to start",
                log=worker,
            )
            waiting = add.using(priority=8).enqueue(1, 2)
            # Taken into the prefetch behind the running task, not started.
            wait_until(lambda: client.zcard(keys.inflight) == 2, "a prefetched task", log=worker)
            assert client.zcard(keys.level_key(8)) == 0
            worker.send_signal(signal.SIGTERM)
            assert worker.wait_exit() == 0
        finally:
            worker.close()
        assert client.zcard(keys.level_key(8)) == 1
        # Queued again, its level is its key's: no record of it is left.
        assert not client.exists(keys.member_levels)
        assert add.get_result(waiting.id).status == TaskResultStatus.READY
        assert slow.get_result(running.id).status == TaskResultStatus.SUCCESSFUL


# Redis 6, which runs the scripts without their flags, and a full Redis


async def test_every_level_script_runs_on_a_full_redis_6_and_7(full_redis: RedisServer) -> None:
    layer = RedisChannelLayer(hosts=[full_redis.url], expiry=EXPIRY_S, capacity=100)
    sender = AsyncSender(layer)
    client = Redis.from_url(full_redis.url)
    queue = ChannelQueue(client, ChannelKeys.for_channel(layer.prefix, CHANNEL), EXPIRY_S)
    try:
        for name, priority in [("high", 5), ("plain", 0), ("low", -5)]:
            assert await send(sender, layer, name, priority)
        with full_redis.client() as sync_client:
            out_of_memory_now(sync_client)
        with pytest.raises(RedisOutOfMemory):
            await send(sender, layer, "refused", 9)
        high, plain, low = await pop(queue, 3, lease_deadline=time.time() + 30)
        await queue.extend([high.member, plain.member, low.member], time.time() + 30)
        await queue.schedule_retry(high.member, time.time() - 1, time.time())
        assert (await queue.promote_due()).count == 1
        await queue.give_back([low.member])
        dead = DeadLetters(layer, [client])
        letter = DeadLetter(channel=CHANNEL, reason="test", attempts=1)
        await dead.add(letter, plain.member)
        assert await dead.requeue(CHANNEL, letter.id) == 1
        died = await pop(queue, 3, lease_deadline=time.time() - 1)
        assert len(await queue.requeue_expired()) == 3
        again = await pop(queue, 3)
        assert [(i.priority, i.previous_attempts) for i in died] == [(5, 1), (0, 0), (-5, 0)]
        assert names(layer, again) == ["high", "plain", "low"]
        assert [item.priority for item in again] == [5, 0, -5]
        assert not await client.exists(queue.keys.member_levels, queue.keys.levels)
    finally:
        await sender.aclose()
        await client.aclose()
        await layer.close_pools()


@pytest.mark.e2e
def test_an_at_most_once_retry_and_dead_letter_keep_their_priority(redis_url: str) -> None:
    with project_settings(redis_url), sync_redis.Redis.from_url(redis_url) as client:
        keys = ChannelKeys.for_channel("asgi", TASKS)
        worker = start_runworker(
            redis_url, TASKS, "--delivery", "at-most-once", "--max-attempts", "2"
        )
        try:
            retried = flaky.using(priority=20).enqueue(1)
            failed = fail.using(priority=-30).enqueue("x")
            # Taken without a lease, each still knows the priority it returns to.
            wait_until(lambda: client.zcard(keys.delayed) == 2, "the retries", log=worker)
            assert sorted(client.hvals(keys.member_levels)) == [b"-30", b"20"]
            wait_until(lambda: client.zcard(keys.dead) == 1, "the dead letter", log=worker)
            assert client.hvals(keys.dead_levels) == [b"-30"]
            wait_until(
                lambda: flaky.get_result(retried.id).status == TaskResultStatus.SUCCESSFUL,
                "the retry to succeed",
                log=worker,
            )
        finally:
            worker.close()
        assert fail.get_result(failed.id).status == TaskResultStatus.FAILED
        assert not client.exists(keys.member_levels, keys.levels)
