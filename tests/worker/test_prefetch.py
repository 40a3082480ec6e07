"""Prefetch: the bounded buffer, alone and inside a worker with a backlog in Redis."""

from __future__ import annotations

import asyncio

import pytest
from channels.consumer import AsyncConsumer
from channels_redis.core import RedisChannelLayer

from routing.types import Message
from tests.worker._inprocess import (
    channel_app,
    depth,
    make_worker,
    running,
    send_numbered,
    wait_for_depth,
    wait_until,
)
from worker.config import ChannelConfig
from worker.consume.delivery import Delivery
from worker.consume.prefetch import Prefetch
from worker.transport.queue import Popped


def delivery(number: int) -> Delivery:
    return Delivery("jobs", 0, Popped(b"member-%d" % number, 0.0), {"type": "job.run", "n": number})


async def test_reserve_hands_out_at_most_the_free_slots() -> None:
    prefetch = Prefetch(3)
    assert await prefetch.reserve(100) == 3
    assert prefetch.free == 0
    prefetch.release(2)
    assert await prefetch.reserve(1) == 1
    assert prefetch.free == 1


async def test_reserve_waits_until_a_slot_is_released() -> None:
    prefetch = Prefetch(1)
    assert await prefetch.reserve(5) == 1
    waiting = asyncio.create_task(prefetch.reserve(5))
    await asyncio.sleep(0)
    assert not waiting.done()
    prefetch.release(1)
    assert await asyncio.wait_for(waiting, 1) == 1


async def test_a_put_goes_to_the_longest_waiting_instance_only() -> None:
    prefetch = Prefetch(4)
    assert await prefetch.reserve(4) == 4
    waiting = [asyncio.create_task(prefetch.get()) for _ in range(3)]
    await asyncio.sleep(0)
    prefetch.put(delivery(0))
    # Every waiter runs here at least once, whether it was woken or not.
    for _ in range(3):
        await asyncio.sleep(0)
    assert [task.done() for task in waiting] == [True, False, False]
    assert waiting[0].result().message["n"] == 0
    prefetch.put(delivery(1))
    assert (await asyncio.wait_for(waiting[1], 1)).message["n"] == 1
    waiting[2].cancel()


async def test_a_woken_instance_cancelled_before_it_runs_passes_the_message_on() -> None:
    prefetch = Prefetch(4)
    assert await prefetch.reserve(4) == 4
    first, second = (asyncio.create_task(prefetch.get()) for _ in range(2))
    await asyncio.sleep(0)
    prefetch.put(delivery(0))
    first.cancel()
    assert (await asyncio.wait_for(second, 1)).message["n"] == 0
    assert first.cancelled()


async def test_a_cancelled_waiter_is_skipped_by_the_next_put() -> None:
    prefetch = Prefetch(4)
    assert await prefetch.reserve(4) == 4
    gone = asyncio.create_task(prefetch.get())
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    live = asyncio.create_task(prefetch.get())
    await asyncio.sleep(0)
    prefetch.put(delivery(0))
    assert (await asyncio.wait_for(live, 1)).message["n"] == 0


async def test_reserve_waits_until_half_the_buffer_is_taken() -> None:
    prefetch = Prefetch(4)
    assert await prefetch.reserve(4) == 4
    for number in range(4):
        prefetch.put(delivery(number))
    waiting = asyncio.create_task(prefetch.reserve(5))
    assert (await prefetch.get()).message["n"] == 0
    await asyncio.sleep(0)
    # Three of four still wait for handlers: no round trip for a single free slot.
    assert not waiting.done()
    assert (await prefetch.get()).message["n"] == 1
    assert await asyncio.wait_for(waiting, 1) == 2


async def test_reserve_waits_until_a_handler_takes_a_message() -> None:
    prefetch = Prefetch(2)
    assert await prefetch.reserve(2) == 2
    prefetch.put(delivery(0))
    prefetch.put(delivery(1))
    assert len(prefetch) == 2
    waiting = asyncio.create_task(prefetch.reserve(5))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert (await prefetch.get()).message["n"] == 0
    assert await asyncio.wait_for(waiting, 1) == 1


async def test_get_returns_messages_in_the_order_they_were_put() -> None:
    prefetch = Prefetch(3)
    await prefetch.reserve(3)
    for number in range(3):
        prefetch.put(delivery(number))
    assert [(await prefetch.get()).message["n"] for _ in range(3)] == [0, 1, 2]
    assert prefetch.free == 3


async def test_get_waits_for_a_message() -> None:
    prefetch = Prefetch(1)
    getting = asyncio.create_task(prefetch.get())
    await asyncio.sleep(0)
    assert not getting.done()
    await prefetch.reserve(1)
    prefetch.put(delivery(7))
    assert (await asyncio.wait_for(getting, 1)).message["n"] == 7


async def test_close_wakes_waiting_pollers_with_no_slots() -> None:
    prefetch = Prefetch(1)
    await prefetch.reserve(1)
    waiting = asyncio.create_task(prefetch.reserve(1))
    await asyncio.sleep(0)
    prefetch.close()
    assert await asyncio.wait_for(waiting, 1) == 0
    prefetch.release(1)
    assert await prefetch.reserve(1) == 0


async def test_drain_returns_unstarted_messages_in_order_and_empties_the_buffer() -> None:
    prefetch = Prefetch(3)
    await prefetch.reserve(3)
    for number in range(3):
        prefetch.put(delivery(number))
    assert (await prefetch.get()).message["n"] == 0
    assert [item.message["n"] for item in prefetch.drain()] == [1, 2]
    assert len(prefetch) == 0
    assert prefetch.drain() == []


# Inside a worker


class OneAtATimeConsumer(AsyncConsumer):  # type: ignore[misc]
    """Each handler waits for a permit, so the test decides when each one finishes."""

    def __init__(self, started: list[int], finished: list[int], permits: asyncio.Semaphore) -> None:
        self.started = started
        self.finished = finished
        self.permits = permits

    async def job_run(self, message: Message) -> None:
        self.started.append(message["n"])
        await self.permits.acquire()
        self.finished.append(message["n"])


@pytest.mark.redis
@pytest.mark.parametrize("delivery_mode", ["at-least-once", "at-most-once"])
async def test_slow_handlers_leave_the_backlog_in_redis(
    layer: RedisChannelLayer, redis_url: str, delivery_mode: str
) -> None:
    total, concurrency, limit = 50, 2, 3
    started: list[int] = []
    finished: list[int] = []
    permits = asyncio.Semaphore(0)
    consumer = OneAtATimeConsumer.as_asgi(started=started, finished=finished, permits=permits)
    config = ChannelConfig(concurrency=concurrency, prefetch=limit, delivery=delivery_mode)
    worker_layer = RedisChannelLayer(hosts=[redis_url], capacity=1000, expiry=3600)
    worker = make_worker(channel_app({"jobs": consumer}), ["jobs"], worker_layer, config)
    await send_numbered(layer, "jobs", total)

    # Out of Redis but unfinished, sampled all along: at most the prefetch plus one message per
    # instance. Reading the depth before the finished count can only undercount, so a sample
    # over the bound is a real breach.
    out_unfinished: list[int] = []
    sampling = True

    async def sample() -> None:
        while sampling:
            queued = await depth(layer, "jobs")
            out_unfinished.append(total - queued - len(finished))

    async def prefetch_topped_up() -> bool:
        # Refilled once no more than half of it is held, so between that and full.
        held = total - len(started) - await depth(layer, "jobs")
        return held == total - len(started) or limit - limit // 2 <= held <= limit

    sampler = asyncio.create_task(sample())
    async with running(worker):
        for done in range(total):
            # At each step `concurrency` handlers run and the prefetch holds at most `limit`
            # messages; everything else is still queued in Redis.
            in_flight = min(concurrency, total - done)
            await wait_until(lambda: len(started) == done + in_flight)  # noqa: B023
            await wait_until(prefetch_topped_up, what="the prefetch topped up")
            permits.release()
        await wait_until(lambda: worker.stats.completed == total)
    sampling = False
    await sampler
    assert started == finished == list(range(total))
    assert max(out_unfinished) == limit + concurrency


@pytest.mark.redis
async def test_worker_prefetches_as_many_messages_as_its_concurrency_by_default(
    layer: RedisChannelLayer, redis_url: str
) -> None:
    started: list[int] = []
    permits = asyncio.Semaphore(0)
    consumer = OneAtATimeConsumer.as_asgi(started=started, finished=[], permits=permits)
    application = channel_app({"jobs": consumer})
    worker_layer = RedisChannelLayer(hosts=[redis_url], expiry=3600)
    worker = make_worker(application, ["jobs"], worker_layer, ChannelConfig(concurrency=4))
    await send_numbered(layer, "jobs", 20)
    async with running(worker):
        await wait_until(lambda: len(started) == 4)
        await wait_for_depth(layer, "jobs", 20 - 4 - 4)
        for _ in range(20):
            permits.release()
        await wait_until(lambda: worker.stats.completed == 20)
