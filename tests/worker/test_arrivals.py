"""Arrival watches: at-least-once pollers wake on Redis key-tracking notices, not a timer."""

from __future__ import annotations

import asyncio
import contextlib
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
from worker.config import ChannelConfig
from worker.consume.worker import Worker
from worker.transport.arrivals import ArrivalWatch
from worker.transport.connection import call
from worker.transport.keys import ChannelKeys
from worker.transport.pop_connection import PopConnection
from worker.transport.queue import ChannelQueue, Popped

pytestmark = pytest.mark.redis

# Far longer than any wait below: a message handled sooner was woken by a notice.
SAFETY_POLL_S = 60.0
CHANNEL_KEY = b"asgi:jobs"
INFLIGHT_KEY = ChannelKeys.for_channel("asgi:", "jobs").inflight.encode()
HEALTH_CHECK_INTERVAL_S = 0.05


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


@contextlib.asynccontextmanager
async def watching(client: Redis) -> AsyncIterator[tuple[ArrivalWatch, PopConnection]]:
    """A running watch for channel "jobs", ready for notices, and the pops that report to it."""
    watch = ArrivalWatch(client, "asgi:jobs", "channel 'jobs'")
    task = asyncio.create_task(watch.run())
    popper = PopConnection(
        ChannelQueue(client, ChannelKeys.for_channel("asgi:", "jobs"), 60), watch
    )
    try:
        await wait_until(lambda: watch.live, what="the watch ready for notices")
        yield watch, popper
    finally:
        await popper.aclose()
        await cancel_and_wait(task)


@pytest.fixture
async def watched(
    redis_url: str, protocol: int
) -> AsyncIterator[tuple[ArrivalWatch, PopConnection]]:
    client = Redis.from_url(redis_url, protocol=protocol)
    async with watching(client) as pair:
        yield pair
    await client.aclose()


@pytest.fixture
def watch(watched: tuple[ArrivalWatch, PopConnection]) -> ArrivalWatch:
    return watched[0]


@pytest.fixture
def popper(watched: tuple[ArrivalWatch, PopConnection]) -> PopConnection:
    """The poller's side: pops of channel "jobs" whose key changes are sent to ``watch``."""
    return watched[1]


@pytest.fixture
def notices(monkeypatch: pytest.MonkeyPatch) -> list[list[bytes] | None]:
    """The keys of every notice any watch reads, in order."""
    seen: list[list[bytes] | None] = []
    original = ArrivalWatch._notice

    def record(self: ArrivalWatch, keys: list[bytes] | None) -> None:
        seen.append(keys)
        original(self, keys)

    monkeypatch.setattr(ArrivalWatch, "_notice", record)
    return seen


async def barrier(admin: Redis, notices: list[list[bytes] | None]) -> list[list[bytes] | None]:
    """The notices read before one for a key the last pop named (so it is tracked) arrives.

    Notices reach the watch in the order Redis sent them, so any the steps before would have
    caused are read by then.
    """
    # ZINCRBY changes the key every time (a ZADD of the same member and score would not).
    await admin.zincrby(INFLIGHT_KEY, 1.0, "barrier")
    await wait_until(lambda: [INFLIGHT_KEY] in notices, what="the barrier's notice")
    return notices[: notices.index([INFLIGHT_KEY])]


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
    watch: ArrivalWatch, popper: PopConnection, notices: list[list[bytes] | None]
) -> None:
    admin = watch.redis
    await popper.pop(10)
    # Keys the pop script does not name send nothing: a longer channel name, retries waiting.
    await admin.zadd("asgi:#cw#delayed:jobs", {"member": 1.0})
    await admin.zadd("asgi:jobs-archive", {"member": 1.0})
    # A send: ZADD then EXPIRE. Tracking is one-shot: nothing more until a pop reads the key.
    await admin.zadd("asgi:jobs", {"first": 1.0})
    await admin.expire("asgi:jobs", 60)
    await admin.zadd("asgi:jobs", {"second": 2.0})
    assert await barrier(admin, notices) == [[CHANNEL_KEY]]
    assert watch.arrived.is_set()
    # Each pop reads the key again; the second changes it while tracked, unnotified (NOLOOP).
    notices.clear()
    watch.arrived.clear()
    assert await popper.pop(1) == ([Popped(b"first", 1.0)], 1)
    assert await popper.pop(1) == ([Popped(b"second", 2.0)], 0)
    assert await barrier(admin, notices) == []
    assert not watch.arrived.is_set()
    await admin.zadd("asgi:jobs", {"third": 3.0})
    await wait_until(watch.arrived.is_set, what="a notice for the next send")


async def test_tracking_is_turned_on_once_per_watch_connection(
    watch: ArrivalWatch, popper: PopConnection
) -> None:
    admin = watch.redis
    await admin.config_resetstat()
    for _ in range(5):
        await popper.pop(10)
    stats = await admin.info("commandstats")
    assert stats["cmdstat_client|tracking"]["calls"] == 1


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


async def test_a_redirect_to_a_connection_redis_dropped_makes_the_watch_reconnect(
    watch: ArrivalWatch, popper: PopConnection, caplog: pytest.LogCaptureFixture
) -> None:
    # As if the watch's connection were gone on the server before the watch read its EOF.
    old_id = watch.client_id
    assert old_id is not None
    watch.client_id = old_id + 1000
    with caplog.at_level(logging.INFO, logger="worker.transport.arrivals"):
        await popper.pop(10)
        assert not watch.live
        await wait_until(lambda: watch.live, 10, "the watch reconnected")
    assert not watch.refused
    assert "refused" not in caplog.text
    assert watch.client_id not in (None, old_id + 1000)
    await popper.pop(10)
    watch.arrived.clear()
    await watch.redis.zadd("asgi:jobs", {"after": 1.0})
    await wait_until(watch.arrived.is_set, what="a notice on the new connection")


@pytest.mark.parametrize(
    "options",
    [{}, {"health_check_interval": HEALTH_CHECK_INTERVAL_S, "retry_on_timeout": True}],
    ids=["plain", "health-checks-and-retries"],
)
async def test_tracking_comes_back_with_the_pop_connection_after_a_kill(
    redis_url: str, protocol: int, options: dict[str, Any]
) -> None:
    client = Redis.from_url(redis_url, protocol=protocol, **options)
    async with watching(client) as (watch, popper):
        await popper.pop(10)
        own_id = await call(popper.connection, "CLIENT", "ID")
        assert await client.client_kill_filter(_id=own_id) == 1
        # Past the interval, redis-py would PING before the next command and, with a retry
        # configured, reconnect unseen, without tracking. The pop fails instead; the next
        # sets tracking up again.
        await asyncio.sleep(2 * HEALTH_CHECK_INTERVAL_S)
        with pytest.raises(RedisConnectionError):
            await popper.pop(10)
        await popper.pop(10)
        watch.arrived.clear()
        await client.zadd("asgi:jobs", {"after": 1.0})
        await wait_until(watch.arrived.is_set, what="a notice after the pop connection reconnected")
    await client.aclose()


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


async def test_a_backlog_beyond_the_prefetch_bound_is_popped_without_waiting_for_notices(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer
) -> None:
    await send_numbered(layer, "jobs", 30)
    probe = Probe()
    worker = make_worker(
        channel_app({"jobs": looping_app(probe)}),
        ["jobs"],
        worker_layer,
        ChannelConfig(delivery="at-least-once", concurrency=1, prefetch=2),
        poll_timeout_s=SAFETY_POLL_S,
    )
    async with running(worker):
        # Nothing changes the channel meanwhile: each pop's count of what is left drives the next.
        await wait_until(lambda: len(probe.finished) == 30, what="the whole backlog handled")
    assert probe.finished == list(range(30))


@pytest.mark.parametrize(
    "denied",
    [["-client|tracking"], ["-client|tracking", "-subscribe"]],
    ids=["no-tracking", "no-tracking-no-subscribe"],
)
async def test_a_server_refusing_tracking_leaves_the_channel_polled(
    own_redis_server: RedisServer,
    protocol: int,
    denied: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = own_redis_server.url
    admin = Redis.from_url(url)
    # An ACL user who may use channels but not CLIENT TRACKING (nor, in one case, SUBSCRIBE).
    await admin.acl_setuser(
        "tasks",
        enabled=True,
        passwords=["+secret"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", *denied],
    )
    await admin.aclose()
    limited_url = url.replace("redis://", "redis://tasks:secret@")
    probe = Probe()
    worker_layer = RedisChannelLayer(
        hosts=[{"address": limited_url, "protocol": protocol}], capacity=1000, expiry=3600
    )
    sender = RedisChannelLayer(hosts=[limited_url], capacity=1000, expiry=3600)
    worker = slow_polling_worker(probe, worker_layer)
    with caplog.at_level(logging.INFO, logger="worker.transport.arrivals"):
        async with running(worker):
            await wait_until(lambda: "refused key tracking" in caplog.text, what="the log line")
            await send_numbered(sender, "jobs", 2)
            await wait_until(lambda: len(probe.finished) == 2)
            assert not any(w.live for w in watches(worker, "jobs"))
    await worker_layer.close_pools()
    await sender.close_pools()
    assert caplog.text.count("channel 'jobs' on host 0 is polled") == 1
