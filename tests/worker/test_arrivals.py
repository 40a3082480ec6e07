"""``worker.arrivals``: at-least-once pollers wake on Redis key-tracking notices, not a timer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from channels_redis.core import RedisChannelLayer
from redis.asyncio import Redis

from tests.redis_server import RedisServer
from tests.worker._inprocess import (
    Probe,
    cancel_and_wait,
    channel_app,
    looping_app,
    make_worker,
    running,
    send_numbered,
    wait_until,
)
from worker.arrivals import ArrivalWatch
from worker.config import ChannelConfig
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


async def test_only_the_channels_own_key_wakes_the_poller(watch: ArrivalWatch) -> None:
    client = watch.redis
    watch.arrived.clear()
    before = watch.notices
    # Keys sharing the prefix: the worker's own records and a longer channel name.
    await client.zadd("asgi:jobs#cw#inflight", {"member": 1.0})
    await client.zadd("asgi:jobs-archive", {"member": 1.0})
    await wait_until(lambda: watch.notices == before + 2, what="two notices read")
    assert not watch.arrived.is_set()
    await client.zadd("asgi:jobs", {"member": 1.0})
    await wait_until(watch.arrived.is_set, what="a notice for asgi:jobs")
    assert watch.notices == before + 3


async def test_the_watch_resubscribes_after_its_connection_is_killed(
    watch: ArrivalWatch, redis_url: str
) -> None:
    admin = Redis.from_url(redis_url)
    # Over RESP2 the watch is a subscriber; over RESP3 an ordinary client.
    killed = await admin.client_kill_filter(_type="pubsub")
    killed += await admin.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    await wait_until(lambda: not watch.live, what="the watch noticed")
    await wait_until(lambda: watch.live, what="the watch resubscribed")
    watch.arrived.clear()
    await admin.zadd("asgi:jobs", {"after": 1.0})
    await wait_until(watch.arrived.is_set, what="a notice after resubscribing")
    await admin.aclose()


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
