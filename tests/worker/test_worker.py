"""The ``Worker`` in-process against a real redis-server: dispatch, concurrency, failures, stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from channels.consumer import AsyncConsumer, SyncConsumer
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.test import override_settings

from routing.types import ASGIApp, Message, Receive, Scope, Send
from tests.redis_server import RedisServer
from tests.worker._inprocess import (
    Probe,
    channel_app,
    channel_key,
    depth,
    looping_app,
    make_worker,
    raw_member,
    running,
    send_numbered,
    wait_for_depth,
    wait_until,
)
from worker.config import ChannelConfig
from worker.consume.worker import Worker
from worker.errors import ConfigurationError
from worker.transport.keys import ChannelKeys

CHANNEL_SCOPE = {"type": "channel", "channel": "jobs"}
DELIVERY_MODES = ["at-least-once", "at-most-once"]
# Task channels want a long layer expiry (the worker warns below 600 s).
EXPIRY_S = 3600


@pytest.fixture
async def django_redis_layer(redis_url: str) -> AsyncIterator[RedisChannelLayer]:
    """A RedisChannelLayer as the Django default layer, which consumers in the worker use."""
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url], "expiry": EXPIRY_S},
        }
    }
    # Channels drops its cached layers when CHANNEL_LAYERS changes, on entry and on exit.
    with override_settings(CHANNEL_LAYERS=layers):
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        yield layer
        await layer.close_pools()


@pytest.fixture
def second_redis_url() -> Iterator[str]:
    server = RedisServer()
    server.start()
    yield server.url
    server.cleanup()


@pytest.fixture(params=DELIVERY_MODES)
def delivery(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


async def inflight(layer: RedisChannelLayer, channel: str) -> int:
    """How many leases the worker holds in Redis on ``channel``."""
    keys = ChannelKeys.for_channel(layer.prefix, channel)
    count: int = await layer.connection(0).zcard(keys.inflight)
    return count


async def dead_letters(layer: RedisChannelLayer, channel: str) -> int:
    keys = ChannelKeys.for_channel(layer.prefix, channel)
    count: int = await layer.connection(0).zcard(keys.dead)
    return count


class RecordingConsumer(AsyncConsumer):  # type: ignore[misc]
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def job_run(self, message: Message) -> None:
        await self.probe.handle(self.scope, message)


# Dispatch


@pytest.mark.redis
async def test_async_consumer_gets_sent_messages_with_the_channel_scope(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, delivery: str
) -> None:
    probe = Probe()
    application = channel_app({"jobs": RecordingConsumer.as_asgi(probe=probe)})
    config = ChannelConfig(concurrency=2, delivery=delivery)
    worker = make_worker(application, ["jobs"], worker_layer, config)
    async with running(worker):
        await send_numbered(layer, "jobs", 3)
        await wait_until(lambda: worker.stats.completed == 3)
    assert sorted(probe.finished) == [0, 1, 2]
    assert probe.scopes == [CHANNEL_SCOPE] * 3
    # The message as sent, plus the attempt number the worker adds.
    assert sorted(probe.messages, key=lambda message: message["n"]) == [
        {"type": "job.run", "n": number, "__attempt__": 1} for number in range(3)
    ]
    assert worker.stats.received == 3
    assert worker.stats.failed == 0
    assert await depth(layer, "jobs") == 0
    # Finished messages hold no lease, so nobody redelivers them.
    assert await inflight(layer, "jobs") == 0


@pytest.mark.redis
async def test_worker_serves_several_channels_at_once(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer
) -> None:
    emails, thumbnails = Probe(gated=True), Probe(gated=True)
    application = channel_app(
        {
            "emails": RecordingConsumer.as_asgi(probe=emails),
            "thumbnails": looping_app(thumbnails),
        }
    )
    worker = make_worker(
        application, ["emails", "thumbnails"], worker_layer, ChannelConfig(concurrency=2)
    )
    async with running(worker):
        await send_numbered(layer, "emails", 2)
        await send_numbered(layer, "thumbnails", 2)
        # Both channels have handlers running at the same time.
        await wait_until(lambda: emails.running == 2 and thumbnails.running == 2)
        emails.gate.set()
        thumbnails.gate.set()
        await wait_until(lambda: worker.stats.completed == 4)
    assert emails.scopes == [{"type": "channel", "channel": "emails"}] * 2
    assert thumbnails.scopes == [{"type": "channel", "channel": "thumbnails"}] * 2
    assert sorted(emails.finished) == sorted(thumbnails.finished) == [0, 1]


class ThreadConsumer(SyncConsumer):  # type: ignore[misc]
    def __init__(self, seen: list[tuple[int, int]]) -> None:
        self.seen = seen

    def job_run(self, message: Message) -> None:
        self.seen.append((message["n"], threading.get_ident()))


@pytest.mark.redis
async def test_sync_consumer_handles_messages_off_the_event_loop_thread(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer
) -> None:
    seen: list[tuple[int, int]] = []
    application = channel_app({"jobs": ThreadConsumer.as_asgi(seen=seen)})
    worker = make_worker(application, ["jobs"], worker_layer, ChannelConfig(concurrency=3))
    async with running(worker):
        await send_numbered(layer, "jobs", 5)
        await wait_until(lambda: worker.stats.completed == 5)
    assert sorted(number for number, _ in seen) == [0, 1, 2, 3, 4]
    assert threading.get_ident() not in {thread for _, thread in seen}
    assert worker.stats.failed == 0


def one_message_app(handled: list[tuple[dict[str, Any], dict[str, Any]]]) -> ASGIApp:
    """A plain application that handles a single message and returns."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        handled.append((dict(scope), dict(message)))

    return application


@pytest.mark.redis
async def test_plain_application_that_returns_after_one_message_is_started_again(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer
) -> None:
    handled: list[tuple[dict[str, Any], dict[str, Any]]] = []
    worker = make_worker(channel_app({"jobs": one_message_app(handled)}), ["jobs"], worker_layer)
    async with running(worker):
        await send_numbered(layer, "jobs", 4)
        await wait_until(lambda: worker.stats.completed == 4)
    assert sorted(message["n"] for _, message in handled) == [0, 1, 2, 3]
    assert all(scope == CHANNEL_SCOPE for scope, _ in handled)
    assert all(message["type"] == "job.run" for _, message in handled)
    assert worker.stats.failed == 0


class GroupSendConsumer(AsyncConsumer):  # type: ignore[misc]
    async def job_run(self, message: Message) -> None:
        await self.channel_layer.group_send("results", {"type": "job.done", "n": message["n"]})


@pytest.mark.redis
async def test_consumer_group_send_reaches_the_group_through_the_default_layer(
    layer: RedisChannelLayer, django_redis_layer: RedisChannelLayer
) -> None:
    worker = make_worker(
        channel_app({"jobs": GroupSendConsumer.as_asgi()}), ["jobs"], django_redis_layer
    )
    reply_channel = await layer.new_channel()
    await layer.group_add("results", reply_channel)
    async with running(worker):
        await layer.send("jobs", {"type": "job.run", "n": 41})
        reply = await asyncio.wait_for(layer.receive(reply_channel), 10)
    assert reply == {"type": "job.done", "n": 41}
    assert worker.stats.failed == 0


class GroupMemberConsumer(AsyncConsumer):  # type: ignore[misc]
    """Joins the group named by ``job.join``; then receives that group's ``group.ping``."""

    def __init__(self, joined: list[str], pinged: list[Message]) -> None:
        self.joined = joined
        self.pinged = pinged

    async def job_join(self, message: Message) -> None:
        await self.channel_layer.group_add(message["group"], self.channel_name)
        self.joined.append(self.channel_name)

    async def group_ping(self, message: Message) -> None:
        self.pinged.append({**message, "to": self.channel_name})


@pytest.mark.redis
async def test_consumer_that_joins_a_group_gets_the_group_messages(
    layer: RedisChannelLayer, django_redis_layer: RedisChannelLayer
) -> None:
    joined: list[str] = []
    pinged: list[Message] = []
    application = channel_app({"jobs": GroupMemberConsumer.as_asgi(joined=joined, pinged=pinged)})
    worker = make_worker(application, ["jobs"], django_redis_layer, ChannelConfig(concurrency=1))
    async with running(worker):
        await layer.send("jobs", {"type": "job.join", "group": "watchers"})
        await wait_until(lambda: len(joined) == 1)
        await layer.group_send("watchers", {"type": "group.ping", "n": 7})
        await wait_until(lambda: len(pinged) == 1)
    assert pinged == [{"type": "group.ping", "n": 7, "to": joined[0]}]
    assert joined[0].startswith("specific.")
    assert worker.stats.failed == 0


# Concurrency


@pytest.mark.redis
async def test_concurrency_n_runs_n_handlers_at_once_and_never_more(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, delivery: str
) -> None:
    probe = Probe(gated=True)
    application = channel_app({"jobs": RecordingConsumer.as_asgi(probe=probe)})
    config = ChannelConfig(concurrency=3, delivery=delivery)
    worker = make_worker(application, ["jobs"], worker_layer, config)
    await send_numbered(layer, "jobs", 12)
    async with running(worker):
        await wait_until(lambda: probe.running == 3)
        # The prefetch (default: the concurrency) is full too, so more work was at hand.
        await wait_for_depth(layer, "jobs", 12 - 3 - 3)
        assert probe.running == 3
        probe.gate.set()
        await wait_until(lambda: worker.stats.completed == 12)
    assert probe.max_running == 3
    assert sorted(probe.finished) == list(range(12))


class SlowFirstConsumer(AsyncConsumer):  # type: ignore[misc]
    """Earlier messages take longer, so any overlap would finish them out of order."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def job_run(self, message: Message) -> None:
        self.probe.enter(self.scope, message)
        await asyncio.sleep(0.002 * (20 - message["n"]))
        self.probe.leave(message)


@pytest.mark.redis
async def test_concurrency_one_handles_messages_in_strict_send_order(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, delivery: str
) -> None:
    probe = Probe()
    application = channel_app({"jobs": SlowFirstConsumer.as_asgi(probe=probe)})
    config = ChannelConfig(concurrency=1, delivery=delivery)
    worker = make_worker(application, ["jobs"], worker_layer, config)
    await send_numbered(layer, "jobs", 20)
    async with running(worker):
        await wait_until(lambda: worker.stats.completed == 20)
    assert probe.started == list(range(20))
    assert probe.finished == list(range(20))
    assert probe.max_running == 1


# Failures


class FlakyConsumer(AsyncConsumer):  # type: ignore[misc]
    """Handles ``job.run``; ``job.explode`` raises. Every instance registers itself."""

    def __init__(self, instances: list[FlakyConsumer]) -> None:
        self.handled: list[int] = []
        instances.append(self)

    async def job_run(self, message: Message) -> None:
        self.handled.append(message["n"])

    async def job_explode(self, message: Message) -> None:
        self.handled.append(message["n"])
        raise RuntimeError(f"cannot process {message['n']}")


@pytest.mark.redis
async def test_failing_handler_is_logged_counted_and_replaced_without_affecting_others(
    layer: RedisChannelLayer,
    worker_layer: RedisChannelLayer,
    delivery: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="worker")
    instances: list[FlakyConsumer] = []
    application = channel_app({"jobs": FlakyConsumer.as_asgi(instances=instances)})
    config = ChannelConfig(concurrency=2, delivery=delivery, max_attempts=1)
    worker = make_worker(application, ["jobs"], worker_layer, config)
    for number in range(10):
        message_type = "job.explode" if number == 3 else "job.run"
        await layer.send("jobs", {"type": message_type, "n": number})
    async with running(worker):
        await wait_until(lambda: worker.stats.completed == 9 and worker.stats.dead == 1)
    assert worker.stats.failed == 1
    assert sorted(n for instance in instances for n in instance.handled) == list(range(10))
    # Two instances, plus one that replaced the failed one; the failed one took nothing more.
    assert len(instances) == 3
    [failed] = [instance for instance in instances if 3 in instance.handled]
    assert failed.handled[-1] == 3
    # Logged once, with the traceback, the channel and the message type.
    [record] = [record for record in caplog.records if record.exc_info]
    assert record.levelno == logging.ERROR
    assert "'job.explode'" in record.getMessage()
    assert "'jobs'" in record.getMessage()
    assert "RuntimeError: cannot process 3" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "Traceback (most recent call last)" in caplog.text
    assert "failed=1" in caplog.text
    assert await dead_letters(layer, "jobs") == 1


class SecondTimeLuckyConsumer(AsyncConsumer):  # type: ignore[misc]
    def __init__(self, attempts: list[int]) -> None:
        self.attempts = attempts

    async def job_run(self, message: Message) -> None:
        self.attempts.append(message["__attempt__"])
        if message["__attempt__"] == 1:
            raise ConnectionError("the mail server hung up")


@pytest.mark.redis
async def test_failed_message_is_retried_with_its_attempt_number(
    layer: RedisChannelLayer,
    worker_layer: RedisChannelLayer,
    delivery: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: list[int] = []
    application = channel_app({"jobs": SecondTimeLuckyConsumer.as_asgi(attempts=attempts)})
    config = ChannelConfig(
        concurrency=1,
        delivery=delivery,
        max_attempts=3,
        lease_s=1.0,  # maintenance, which moves due retries back, runs every lease_s / 3
        retry_backoff_min_s=0.01,
        retry_backoff_max_s=0.01,
    )
    worker = make_worker(application, ["jobs"], worker_layer, config)
    async with running(worker):
        await layer.send("jobs", {"type": "job.run"})
        await wait_until(lambda: worker.stats.completed == 1)
    assert attempts == [1, 2]
    assert worker.stats.failed == 1
    assert worker.stats.retried == 1
    assert worker.stats.dead == 0
    assert "Retrying 'job.run' on channel 'jobs'" in caplog.text
    assert await inflight(layer, "jobs") == 0
    assert await dead_letters(layer, "jobs") == 0


class StuckConsumer(AsyncConsumer):  # type: ignore[misc]
    async def job_run(self, message: Message) -> None:
        await asyncio.Event().wait()


@pytest.mark.redis
async def test_handler_over_the_message_timeout_is_cancelled_and_dead_lettered(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    config = ChannelConfig(concurrency=1, max_attempts=1, message_timeout_s=0.2)
    worker = make_worker(
        channel_app({"jobs": StuckConsumer.as_asgi()}), ["jobs"], worker_layer, config
    )
    async with running(worker):
        await layer.send("jobs", {"type": "job.run"})
        await wait_until(lambda: worker.stats.dead == 1)
    assert worker.stats.timed_out == 1
    assert worker.stats.failed == 1
    assert "message_timeout_s=0.2" in caplog.text
    assert await dead_letters(layer, "jobs") == 1


class SendingConsumer(AsyncConsumer):  # type: ignore[misc]
    async def job_run(self, message: Message) -> None:
        await self.send({"type": "websocket.send", "text": "nobody is listening"})


@pytest.mark.redis
async def test_handler_calling_send_fails_with_a_message_naming_the_channel_layer(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    config = ChannelConfig(concurrency=1, max_attempts=1)
    worker = make_worker(
        channel_app({"jobs": SendingConsumer.as_asgi()}), ["jobs"], worker_layer, config
    )
    async with running(worker):
        await layer.send("jobs", {"type": "job.run"})
        await wait_until(lambda: worker.stats.failed == 1)
    [record] = [record for record in caplog.records if record.exc_info]
    assert record.exc_info is not None
    assert type(record.exc_info[1]).__name__ == "ApplicationSendError"
    assert "group_send()" in str(record.exc_info[1])


@pytest.mark.redis
async def test_invalid_members_are_counted_logged_with_the_reason_and_skipped(
    layer: RedisChannelLayer,
    worker_layer: RedisChannelLayer,
    delivery: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = Probe()
    config = ChannelConfig(concurrency=1, delivery=delivery)
    worker = make_worker(channel_app({"jobs": looping_app(probe)}), ["jobs"], worker_layer, config)
    await layer.send("jobs", {"type": "job.run", "n": 0})
    bad_members = [
        os.urandom(12) + b"\xc1",  # 0xc1 is never used by msgpack
        raw_member([1, 2, 3]),
        raw_member({"n": 5}),
        raw_member({"type": 5}),
    ]
    redis = layer.connection(0)
    for member in bad_members:
        await redis.zadd(channel_key(layer, "jobs"), {member: time.time()})
    await layer.send("jobs", {"type": "job.run", "n": 1})
    async with running(worker):
        await wait_until(lambda: worker.stats.completed == 2)
        await layer.send("jobs", {"type": "job.run", "n": 2})
        await wait_until(lambda: worker.stats.completed == 3)
    assert probe.finished == [0, 1, 2]
    assert worker.stats.invalid == 4
    assert worker.stats.received == 7
    assert worker.stats.failed == 0
    # Never dropped silently: each is dead-lettered, logged with the channel and the reason.
    assert worker.stats.dead == 4
    assert await dead_letters(layer, "jobs") == 4
    logged = [record.getMessage() for record in error_records(caplog)]
    assert len(logged) == 4
    assert all("on channel 'jobs'" in line for line in logged)
    assert "cannot be decoded by the layer's serializer" in logged[0]
    assert "is a list, not a dict" in logged[1]
    assert "has no str 'type' key (got None)" in logged[2]
    assert "has no str 'type' key (got 5)" in logged[3]


# Layer hosts


@pytest.mark.redis
async def test_worker_consumes_every_host_of_a_sharded_layer(
    redis_url: str, second_redis_url: str, delivery: str
) -> None:
    hosts = [redis_url, second_redis_url]
    sender = RedisChannelLayer(hosts=hosts, expiry=EXPIRY_S)
    probe = Probe()
    worker = make_worker(
        channel_app({"jobs": looping_app(probe)}),
        ["jobs"],
        RedisChannelLayer(hosts=hosts, expiry=EXPIRY_S),
        ChannelConfig(delivery=delivery),
    )
    try:
        await send_numbered(sender, "jobs", 10)
        # channels-redis sends general channels round-robin over the hosts.
        assert [await depth(sender, "jobs", index) for index in (0, 1)] == [5, 5]
        async with running(worker):
            await wait_until(lambda: worker.stats.completed == 10)
        assert sorted(probe.finished) == list(range(10))
        assert [await depth(sender, "jobs", index) for index in (0, 1)] == [0, 0]
    finally:
        await sender.close_pools()


@pytest.mark.redis
async def test_worker_reads_the_layers_own_prefix_and_serializer(redis_url: str) -> None:
    options: dict[str, Any] = {"prefix": "myproject", "serializer_format": "json"}
    sender = RedisChannelLayer(hosts=[redis_url], expiry=EXPIRY_S, **options)
    probe = Probe()
    worker = make_worker(
        channel_app({"jobs": looping_app(probe)}),
        ["jobs"],
        RedisChannelLayer(hosts=[redis_url], expiry=EXPIRY_S, **options),
    )
    try:
        await send_numbered(sender, "jobs", 2)
        assert await depth(sender, "jobs") == 2
        async with running(worker):
            await wait_until(lambda: worker.stats.completed == 2)
        assert sorted(probe.finished) == [0, 1]
        assert worker.stats.invalid == 0
        assert await depth(sender, "jobs") == 0
    finally:
        await sender.close_pools()


@pytest.mark.redis
async def test_worker_warns_about_a_short_layer_expiry(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    layer = RedisChannelLayer(hosts=[redis_url], expiry=60)
    worker = make_worker(channel_app({"jobs": looping_app(Probe())}), ["jobs"], layer)
    async with running(worker):
        await wait_until(lambda: "expiry=60 s" in caplog.text)
    [warning] = [r for r in caplog.records if "expiry=60 s" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "'jobs'" in warning.getMessage()


# Stopping


@pytest.mark.redis
async def test_stop_finishes_in_flight_handlers_and_returns_unstarted_messages(
    layer: RedisChannelLayer,
    worker_layer: RedisChannelLayer,
    delivery: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="worker")
    probe = Probe(gated=True)
    application = channel_app({"jobs": RecordingConsumer.as_asgi(probe=probe)})
    config = ChannelConfig(concurrency=2, prefetch=3, delivery=delivery)
    worker = make_worker(application, ["jobs"], worker_layer, config)
    await send_numbered(layer, "jobs", 10)
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: probe.running == 2)
    await wait_for_depth(layer, "jobs", 10 - 2 - 3)
    worker.stop()
    await wait_until(lambda: "Stopping" in caplog.text)
    probe.gate.set()
    await asyncio.wait_for(task, 20)
    assert sorted(probe.finished) == [0, 1]
    assert probe.started == [0, 1]
    assert worker.stats.completed == 2
    assert worker.stats.returned == 3
    assert worker.stats.cancelled == 0
    assert await depth(layer, "jobs") == 8
    assert await inflight(layer, "jobs") == 0
    # Returned messages sit at the head, in order: the layer's own receive gets them first.
    received = [(await layer.receive("jobs"))["n"] for _ in range(8)]
    assert received == list(range(2, 10))
    [summary] = [r.getMessage() for r in caplog.records if "Worker stopped" in r.getMessage()]
    assert "completed=2" in summary
    assert "returned=3" in summary


@pytest.mark.redis
@pytest.mark.parametrize(
    ("delivery", "returned", "left"),
    [
        # The cancelled message goes back too, ahead of the prefetched one.
        ("at-least-once", 2, [0, 1, 2]),
        # The cancelled message is gone, as at-most-once allows; the prefetched one is back.
        ("at-most-once", 1, [1, 2]),
    ],
)
async def test_shutdown_timeout_cancels_a_stuck_handler(
    layer: RedisChannelLayer,
    worker_layer: RedisChannelLayer,
    caplog: pytest.LogCaptureFixture,
    delivery: str,
    returned: int,
    left: list[int],
) -> None:
    probe = Probe(gated=True)  # never opened
    application = channel_app({"jobs": RecordingConsumer.as_asgi(probe=probe)})
    config = ChannelConfig(concurrency=1, prefetch=1, delivery=delivery)
    worker = make_worker(application, ["jobs"], worker_layer, config, shutdown_timeout_s=0.5)
    await send_numbered(layer, "jobs", 3)
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: probe.running == 1)
    await wait_for_depth(layer, "jobs", 1)
    started = time.monotonic()
    worker.stop()
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - started < 5
    assert worker.stats.cancelled == 1
    assert worker.stats.completed == 0
    assert worker.stats.returned == returned
    # The cancellation reached the handler (its ``finally`` ran).
    assert probe.running == 0
    assert probe.finished == [0]
    assert "Shutdown timeout of 0.5 s reached; cancelling 1 handler(s)" in caplog.text
    assert [(await layer.receive("jobs"))["n"] for _ in left] == left
    assert await depth(layer, "jobs") == 0
    assert await inflight(layer, "jobs") == 0


@pytest.mark.redis
async def test_stopped_worker_leaves_no_connection_open(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, delivery: str
) -> None:
    redis = layer.connection(0)

    async def connections() -> int:
        clients: list[dict[str, Any]] = await redis.client_list()
        return len(clients)

    await layer.send("jobs", {"type": "job.run", "n": 0})
    before = await connections()
    probe = Probe()
    config = ChannelConfig(concurrency=2, delivery=delivery)
    worker = make_worker(channel_app({"jobs": looping_app(probe)}), ["jobs"], worker_layer, config)
    async with running(worker):
        await wait_until(lambda: worker.stats.completed == 1)
        assert await connections() > before

    async def back_to_before() -> bool:
        return await connections() == before

    await wait_until(back_to_before, what="the worker's connections closed")


class CancelSwallowingConsumer(AsyncConsumer):  # type: ignore[misc]
    """Ignores the first cancel, as a task inside ``asyncio.wait_for`` may on Python 3.11."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def job_run(self, message: Message) -> None:
        self.probe.enter(self.scope, message)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        self.probe.leave(message)
        await asyncio.Event().wait()


@pytest.mark.redis
async def test_stop_ends_a_handler_that_survives_the_first_cancel(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer
) -> None:
    probe = Probe()
    application = channel_app({"jobs": CancelSwallowingConsumer.as_asgi(probe=probe)})
    config = ChannelConfig(concurrency=1)
    worker = make_worker(application, ["jobs"], worker_layer, config, shutdown_timeout_s=0.2)
    await layer.send("jobs", {"type": "job.run", "n": 0})
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: probe.running == 1)
    worker.stop()
    await asyncio.wait_for(task, 10)
    assert probe.finished == [0]
    assert worker.stats.cancelled == 1
    assert worker.stats.returned == 1


# Idle connections


class IdleConsumer(AsyncConsumer):  # type: ignore[misc]
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def job_join(self, message: Message) -> None:
        await self.channel_layer.group_add("idlers", self.channel_name)
        self.log.append("joined")

    async def job_run(self, message: Message) -> None:
        self.log.append("ran")

    async def group_ping(self, message: Message) -> None:
        self.log.append("pinged")


@pytest.mark.redis
@pytest.mark.timeout(60)
async def test_worker_and_its_consumers_handle_messages_after_idle_time(
    layer: RedisChannelLayer,
    django_redis_layer: RedisChannelLayer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    application = channel_app({"jobs": IdleConsumer.as_asgi(log=log)})
    # At-most-once pops block in Redis; 6 s is past redis-py 8's 5 s default read timeout.
    config = ChannelConfig(concurrency=1, delivery="at-most-once")
    worker = make_worker(application, ["jobs"], django_redis_layer, config, poll_timeout_s=6.0)
    async with running(worker):
        await layer.send("jobs", {"type": "job.join"})
        await wait_until(lambda: log == ["joined"])
        # Idle on purpose: longer than redis-py 8's 5 s default read timeout and than the 5 s
        # blocking receive the consumer's own channel-layer connection sits in.
        await asyncio.sleep(7)
        await layer.send("jobs", {"type": "job.run"})
        await wait_until(lambda: log == ["joined", "ran"])
        await layer.group_send("idlers", {"type": "group.ping"})
        await wait_until(lambda: log == ["joined", "ran", "pinged"])
    assert error_records(caplog) == []
    assert worker.stats.failed == 0
    assert worker.stats.redis_errors == 0
    assert worker.stats.listener_restarts == 0


# Construction


def test_worker_rejects_invalid_channel_names() -> None:
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1"])
    with pytest.raises(ConfigurationError, match=r"Channel name 'bad name!' is not valid"):
        Worker(channel_app({}), ["jobs", "bad name!"], layer)
    with pytest.raises(ConfigurationError, match=r"'a!b' is not valid: .*without '!'"):
        Worker(channel_app({}), ["a!b"], layer)
    with pytest.raises(ConfigurationError, match=r"'x{100}' is not valid"):
        Worker(channel_app({}), ["x" * 100], layer)


def test_worker_rejects_an_empty_channel_list() -> None:
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1"])
    with pytest.raises(ConfigurationError, match="at least one channel name"):
        Worker(channel_app({}), [], layer)


def test_worker_rejects_an_invalid_channel_config_at_construction() -> None:
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1"])
    with pytest.raises(ConfigurationError, match=r"concurrency for channel 'jobs' is 0"):
        Worker(channel_app({}), ["jobs"], layer, default_config=ChannelConfig(concurrency=0))
    with pytest.raises(ConfigurationError, match=r"prefetch for channel 'other' is -1"):
        Worker(
            channel_app({}),
            ["jobs", "other"],
            layer,
            configs={"other": ChannelConfig(prefetch=-1)},
        )


def test_worker_deduplicates_channel_names_and_describes_itself() -> None:
    layer = RedisChannelLayer(hosts=["redis://:secret@127.0.0.1:6390/0"])
    worker = Worker(
        channel_app({}),
        ["jobs", "mail", "jobs"],
        layer,
        default_config=ChannelConfig(concurrency=4),
        configs={"mail": ChannelConfig(concurrency=1, prefetch=2)},
    )
    assert worker.channels == ["jobs", "mail"]
    line = worker.startup_line()
    assert "jobs (concurrency 4, prefetch 4" in line
    assert "mail (concurrency 1, prefetch 2" in line
    assert "secret" not in line
    assert "redis://***@127.0.0.1:6390/0" in line
