"""``worker.arrivals``: at-least-once pollers wake on Redis key-tracking notices, not a timer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.redis_server import RedisServer
from tests.worker._inprocess import (
    Probe,
    cancel_and_wait,
    channel_app,
    channel_key,
    looping_app,
    make_worker,
    running,
    send_numbered,
    wait_until,
)
from worker._connection import call
from worker.arrivals import ArrivalWatch
from worker.config import ChannelConfig
from worker.keys import ChannelKeys
from worker.pop_connection import PopConnection
from worker.queue import ChannelQueue, Popped
from worker.worker import Worker

pytestmark = pytest.mark.redis

# Far longer than any wait below: a message handled sooner was woken by a notice.
SAFETY_POLL_S = 60.0


def watches(worker: Worker, channel: str) -> list[ArrivalWatch]:
    runtime = worker._runtimes.get(channel)
    return list(runtime.listener.arrivals) if runtime else []


def all_live(worker: Worker, channel: str) -> bool:
    current = watches(worker, channel)
    return bool(current) and all(watch.live for watch in current)


def slow_polling_worker(probe: Probe, layer: RedisChannelLayer) -> Worker:
    """An at-least-once worker on channel "jobs" whose timed poll of an idle channel is rare."""
    return make_worker(
        channel_app({"jobs": looping_app(probe)}),
        ["jobs"],
        layer,
        ChannelConfig(delivery="at-least-once"),
        poll_timeout_s=SAFETY_POLL_S,
    )


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request: pytest.FixtureRequest) -> int:
    value: int = request.param
    return value


@pytest.fixture
async def watch(redis_url: str, protocol: int) -> AsyncIterator[ArrivalWatch]:
    client = Redis.from_url(redis_url, protocol=protocol)
    watch = ArrivalWatch(client, "asgi:jobs", "channel 'jobs'")
    task = asyncio.create_task(watch.run())
    await wait_until(lambda: watch.live, what="the watch subscribed")
    yield watch
    await cancel_and_wait(task)
    await client.aclose()


@pytest.fixture
async def popper(watch: ArrivalWatch) -> AsyncIterator[PopConnection]:
    """The poller's side: pops of channel "jobs" whose key changes are sent to ``watch``."""
    popper = PopConnection(
        ChannelQueue(watch.redis, ChannelKeys.for_channel("asgi:", "jobs"), 60), watch
    )
    yield popper
    await popper.aclose()


async def notified(watch: ArrivalWatch, count: int) -> None:
    """Wait for the ``count``-th notice; a notice for the channel itself sets ``arrived``."""
    await wait_until(lambda: watch.notices >= count, what=f"{count} notice(s) read")
    assert watch.notices == count


async def test_a_send_wakes_a_worker_whose_timed_poll_is_a_minute_away(
    layer: RedisChannelLayer, redis_url: str, protocol: int
) -> None:
    probe = Probe()
    worker_layer = RedisChannelLayer(
        hosts=[{"address": redis_url, "protocol": protocol}], capacity=1000, expiry=3600
    )
    worker = slow_polling_worker(probe, worker_layer)
    async with running(worker):
        await wait_until(lambda: all_live(worker, "jobs"), what="arrival notices live")
        for round_number in range(3):
            # Each send finds the poller waiting on the empty channel, not polling it.
            await send_numbered(layer, "jobs", 1)
            await wait_until(lambda: len(probe.finished) == round_number + 1)  # noqa: B023
    await worker_layer.close_pools()
    assert probe.finished == [0, 0, 0]


async def test_one_notice_per_change_since_the_last_pop_and_none_for_the_pop_itself(
    watch: ArrivalWatch, popper: PopConnection
) -> None:
    admin = watch.redis
    await popper.pop(10)
    watch.arrived.clear()
    # Keys the pop script does not name send nothing: a longer channel name, retries waiting.
    await admin.zadd("asgi:#cw#delayed:jobs", {"member": 1.0})
    await admin.zadd("asgi:jobs-archive", {"member": 1.0})
    # A send: ZADD then EXPIRE. Tracking is one-shot: nothing more until a pop reads the key.
    await admin.zadd("asgi:jobs", {"first": 1.0})
    await admin.expire("asgi:jobs", 60)
    await admin.zadd("asgi:jobs", {"second": 2.0})
    await notified(watch, 1)
    assert watch.arrived.is_set()
    # Each pop reads the key again; the second changes it while tracked, unnotified (NOLOOP).
    watch.arrived.clear()
    assert await popper.pop(1) == ([Popped(b"first", 1.0)], 1)
    assert await popper.pop(1) == ([Popped(b"second", 2.0)], 0)
    await admin.zadd("asgi:jobs", {"third": 3.0})
    await notified(watch, 2)
    assert watch.arrived.is_set()


async def test_notices_follow_the_watch_to_its_new_connection_after_a_kill(
    watch: ArrivalWatch, popper: PopConnection, redis_url: str
) -> None:
    await popper.pop(10)
    admin = Redis.from_url(redis_url)
    assert await admin.client_kill_filter(_id=str(watch.client_id)) == 1
    # A change while the notices have nowhere to go: RESP3 tells the pop connection so.
    await admin.zadd("asgi:jobs", {"meanwhile": 1.0})
    await wait_until(lambda: not watch.live, what="the watch noticed")
    await wait_until(lambda: watch.live, what="the watch reconnected")
    # The poller's next pop finds the message and redirects tracking to the new connection.
    assert await popper.pop(10) == ([Popped(b"meanwhile", 1.0)], 0)
    watch.arrived.clear()
    await admin.zadd("asgi:jobs", {"after": 1.0})
    await wait_until(watch.arrived.is_set, what="a notice after reconnecting")
    await admin.aclose()


async def test_tracking_comes_back_with_the_pop_connection_after_a_kill(
    watch: ArrivalWatch, popper: PopConnection, redis_url: str
) -> None:
    await popper.pop(10)
    admin = Redis.from_url(redis_url)
    assert await admin.client_kill_filter(_id=await call(popper.connection, "CLIENT", "ID")) == 1
    with pytest.raises(RedisConnectionError):
        await popper.pop(10)
    await popper.pop(10)
    watch.arrived.clear()
    await admin.zadd("asgi:jobs", {"after": 1.0})
    await wait_until(watch.arrived.is_set, what="a notice after the pop connection reconnected")
    await admin.aclose()


async def test_an_idle_channel_is_popped_once_per_message(
    layer: RedisChannelLayer, redis_url: str, protocol: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pops: list[int] = []
    original = PopConnection.pop

    async def counted(self: PopConnection, count: int, lease_deadline: float = 0.0) -> Any:
        result = await original(self, count, lease_deadline)
        pops.append(len(result[0]))
        return result

    monkeypatch.setattr(PopConnection, "pop", counted)
    probe = Probe()
    worker_layer = RedisChannelLayer(
        hosts=[{"address": redis_url, "protocol": protocol}], capacity=1000, expiry=3600
    )
    admin = Redis.from_url(redis_url)
    worker = slow_polling_worker(probe, worker_layer)
    async with running(worker):
        await wait_until(lambda: all_live(worker, "jobs"), what="arrival notices live")
        await wait_until(lambda: bool(pops), what="the first pop")
        before = len(pops)
        for number in range(5):
            # The layer's own ZADD alone; a send's EXPIRE may reach Redis after the pop.
            await admin.zadd(
                channel_key(layer, "jobs"),
                {layer.serialize({"type": "job.run", "n": number}): time.time()},
            )
            await wait_until(lambda: len(probe.finished) == number + 1)  # noqa: B023
    await worker_layer.close_pools()
    await admin.aclose()
    # One notice, one pop, one message: no second pop of the drained channel. (A pop from
    # start-up, when the watch came live, may still have been on its way.)
    during = pops[before:]
    assert [size for size in during if size] == [1, 1, 1, 1, 1]
    assert during.count(0) <= 1, during


async def test_a_server_refusing_tracking_leaves_the_channel_polled(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = own_redis_server.url
    admin = Redis.from_url(url)
    # An ACL user who may use channels but not CLIENT TRACKING or SUBSCRIBE.
    await admin.acl_setuser(
        "tasks",
        enabled=True,
        passwords=["+secret"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-client|tracking", "-subscribe"],
    )
    await admin.aclose()
    limited_url = url.replace("redis://", "redis://tasks:secret@")
    probe = Probe()
    worker_layer = RedisChannelLayer(hosts=[limited_url], capacity=1000, expiry=3600)
    sender = RedisChannelLayer(hosts=[limited_url], capacity=1000, expiry=3600)
    worker = slow_polling_worker(probe, worker_layer)
    with caplog.at_level(logging.INFO, logger="worker.arrivals"):
        async with running(worker):
            await wait_until(lambda: "refused key tracking" in caplog.text, what="the log line")
            await send_numbered(sender, "jobs", 2)
            await wait_until(lambda: len(probe.finished) == 2)
            assert not any(w.live for w in watches(worker, "jobs"))
    await worker_layer.close_pools()
    await sender.close_pools()
    assert "channel 'jobs' on host 0 is polled" in caplog.text
