"""``send()``, ``asend()`` and ``send_on_commit()`` against a real redis-server and runworker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.db import transaction
from django.test import override_settings

from tests.redis_server import RedisServer
from tests.worker._inprocess import Probe, channel_app, looping_app, make_worker, running
from tests.worker._inprocess import wait_until as async_wait_until
from tests.worker.process_helpers import wait_until
from tests.worker.send_project import handled, project_settings, start_runworker
from tests.worker.tasks_project import settings as project
from worker.config import ChannelConfig
from worker.errors import (
    ChannelAtCapacity,
    ConfigurationError,
    InvalidChannelName,
    MessageNotSendable,
    MessageTooLarge,
    SendError,
    UnknownChannel,
    UnknownChannelWarning,
)
from worker.sending.api import asend, send, send_on_commit

pytestmark = pytest.mark.redis

CHANNEL = "thumbnails-generate"
KEY = f"asgi{CHANNEL}"
APPLICATION = project.ASGI_APPLICATION


@pytest.fixture
def on_redis(redis_url: str) -> Iterator[redis.Redis]:
    """The test project's settings on the test's redis-server, and a client to look inside."""
    with project_settings(redis_url), redis.Redis.from_url(redis_url) as client:
        yield client


def queued(client: redis.Redis, key: str = KEY) -> list[dict[str, Any]]:
    """The messages waiting on a channel, decoded the way channels-redis decodes them."""
    members: list[bytes] = client.zrange(key, 0, -1)  # type: ignore[assignment]
    decoder = RedisChannelLayer()
    return [decoder.deserialize(member) for member in members]


def generate(photo_id: int) -> dict[str, Any]:
    return {"type": "thumbnails.generate", "id": photo_id}


# Reaching consumers


@pytest.mark.e2e
def test_a_view_sends_from_threads_and_runworker_handles_every_message(redis_url: str) -> None:
    worker = start_runworker(redis_url, CHANNEL)
    try:
        with project_settings(redis_url):
            # Like WSGI request threads: no event loop anywhere.
            views = [threading.Thread(target=send, args=(CHANNEL, generate(n))) for n in range(5)]
            for view in views:
                view.start()
            for view in views:
                view.join()
        wait_until(lambda: len(handled(redis_url)) == 5, "5 handled messages", log=worker)
        entries = handled(redis_url)
        assert sorted(entry["id"] for entry in entries) == [0, 1, 2, 3, 4]
        assert {entry["pid"] for entry in entries} == {worker.pid}
        assert {entry["attempt"] for entry in entries} == {1}
        worker.send_signal(signal.SIGTERM)
        assert worker.wait_exit() == 0
    finally:
        worker.close()


async def test_asend_message_is_received_by_channels_redis_itself(redis_url: str) -> None:
    with project_settings(redis_url):
        await asend(CHANNEL, generate(7))
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        try:
            assert await layer.receive(CHANNEL) == generate(7)
        finally:
            await layer.close_pools()


async def test_send_reaches_a_process_specific_channel(redis_url: str) -> None:
    with project_settings(redis_url):
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        try:
            name = await layer.new_channel()
            # A sync caller, as a view replying to a websocket consumer would be.
            await asyncio.to_thread(send, name, {"type": "chat.message", "text": "hi"})
            received = await asyncio.wait_for(layer.receive(name), 10)
        finally:
            await layer.close_pools()
    assert received == {"type": "chat.message", "text": "hi"}


@pytest.mark.parametrize("delivery", ["at-least-once", "at-most-once"])
async def test_sent_messages_are_handled_in_either_delivery_mode(
    redis_url: str, delivery: str
) -> None:
    probe = Probe()
    layer = RedisChannelLayer(hosts=[redis_url], expiry=3600)
    config = ChannelConfig(delivery=delivery)
    worker = make_worker(channel_app({CHANNEL: looping_app(probe)}), [CHANNEL], layer, config)
    with project_settings(redis_url):
        async with running(worker):
            # A type the project's consumer handles: send() checks it against that consumer.
            await asend(CHANNEL, {"type": "thumbnails.generate", "n": 1})
            await asyncio.to_thread(send, CHANNEL, {"type": "thumbnails.generate", "n": 2})
            await async_wait_until(lambda: worker.stats.completed == 2)
    assert sorted(probe.finished) == [1, 2]
    assert worker.stats.invalid == 0


def test_send_matches_channels_redis_trimming_and_expiry(on_redis: redis.Redis) -> None:
    # channels-redis drops members older than the layer's expiry (3600 s here) on every send.
    on_redis.zadd(KEY, {b"stale-member": time.time() - 4000})
    send(CHANNEL, generate(1))
    assert queued(on_redis) == [generate(1)]
    ttl: Any = on_redis.ttl(KEY)
    assert 3590 < ttl <= 3600


def test_send_spreads_channels_over_hosts_and_pins_process_specific_ones(
    redis_url: str,
) -> None:
    second = RedisServer()
    second.start()
    try:
        hosts = {"hosts": [redis_url, second.url]}
        with override_settings(
            CHANNEL_LAYERS={"default": {**project.layers(redis_url)["default"], "CONFIG": hosts}},
            ASGI_APPLICATION=APPLICATION,
        ):
            for number in range(4):
                send(CHANNEL, generate(number))
            layer = get_channel_layer()
            assert isinstance(layer, RedisChannelLayer)
            specific = "specific.abc!1"
            for _ in range(3):
                send(specific, {"type": "chat.message"})
            pinned = layer.consistent_hash(specific)
        clients = [redis.Redis.from_url(redis_url), second.client()]
        try:
            # Round robin, as channels-redis does for general channels.
            assert [len(queued(client)) for client in clients] == [2, 2]
            counts = [client.zcard("asgispecific.abc!") for client in clients]
            assert counts[pinned] == 3
            assert sum(counts) == 3
        finally:
            for client in clients:
                client.close()
    finally:
        second.cleanup()


def test_send_works_again_in_a_forked_child_and_in_its_parent(on_redis: redis.Redis) -> None:
    send(CHANNEL, generate(1))
    with warnings.catch_warnings():
        # Python 3.12 warns about forking a process that has threads (the test runner's).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        try:
            send(CHANNEL, generate(2))
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    send(CHANNEL, generate(3))
    assert sorted(message["id"] for message in queued(on_redis)) == [1, 2, 3]


# Refusals


BAD_SENDS = [
    pytest.param(
        "thumb nail",
        generate(1),
        InvalidChannelName,
        r"Channel name 'thumb nail' is not valid: use ASCII letters, digits, hyphens",
        id="space-in-name",
    ),
    pytest.param(
        42, generate(1), InvalidChannelName, r"Channel name 42 is not valid", id="int-name"
    ),
    pytest.param(
        "t" * 100,
        generate(1),
        InvalidChannelName,
        r"shorter than 100 characters",
        id="long-name",
    ),
    pytest.param(
        CHANNEL,
        ["thumbnails.generate"],
        MessageNotSendable,
        r"Message for channel 'thumbnails-generate' is a list, not a dict; channel messages "
        r"are dicts with a 'type' key",
        id="list",
    ),
    pytest.param(
        CHANNEL,
        {"id": 7},
        MessageNotSendable,
        r"Message for channel 'thumbnails-generate' has no str 'type' key \(got None\)",
        id="no-type",
    ),
    pytest.param(
        CHANNEL,
        {"type": 7},
        MessageNotSendable,
        r"has no str 'type' key \(got 7\)",
        id="int-type",
    ),
    pytest.param(
        CHANNEL,
        {"type": "thumbnails.generate", "__asgi_channel__": "x"},
        MessageNotSendable,
        r"has the key '__asgi_channel__', which channels-redis reserves",
        id="reserved-key",
    ),
    pytest.param(
        CHANNEL,
        {"type": "thumbnails.generate", "when": datetime(2026, 1, 2, tzinfo=UTC)},
        MessageNotSendable,
        r"Message for channel 'thumbnails-generate' cannot be serialised by the layer: "
        r"message\['when'\] is a datetime\.datetime \(TypeError: ",
        id="datetime",
    ),
    pytest.param(
        CHANNEL,
        {"type": "thumbnails.generate", "photo": {"sizes": [1, {2}]}},
        MessageNotSendable,
        r"message\['photo'\]\['sizes'\]\[1\] is a set",
        id="nested-set",
    ),
]


@pytest.mark.parametrize(("channel", "message", "error", "pattern"), BAD_SENDS)
def test_send_refuses_bad_input_naming_the_value(
    on_redis: redis.Redis, channel: Any, message: Any, error: type[SendError], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        send(channel, message)
    assert on_redis.dbsize() == 0


@pytest.mark.parametrize(("channel", "message", "error", "pattern"), BAD_SENDS)
async def test_asend_refuses_bad_input_naming_the_value(
    on_redis: redis.Redis, channel: Any, message: Any, error: type[SendError], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        await asend(channel, message)
    assert on_redis.dbsize() == 0


def test_send_refuses_a_message_over_the_size_limit(redis_url: str) -> None:
    with project_settings(redis_url, worker={"MAX_SEND_BYTES": 1000}):
        send(CHANNEL, {**generate(1), "note": "x" * 900})
        with pytest.raises(
            MessageTooLarge,
            match=r"Message for channel 'thumbnails-generate' is 20\d\d bytes serialised, over "
            r"the 1000-byte limit \(CHANNEL_WORKER\['MAX_SEND_BYTES'\]\); store large data",
        ):
            send(CHANNEL, {**generate(2), "note": "x" * 2000})


def test_send_refuses_invalid_errors_as_value_errors(on_redis: redis.Redis) -> None:
    # Callers that catch ValueError keep working.
    with pytest.raises(ValueError, match="is not valid"):
        send("thumb nail", generate(1))


# A full channel


def test_a_full_channel_raises_channel_at_capacity_with_the_fix(redis_url: str) -> None:
    with project_settings(redis_url, layer={"channel_capacity": {CHANNEL: 2}}):
        send(CHANNEL, generate(1))
        send(CHANNEL, generate(2))
        with pytest.raises(
            ChannelAtCapacity,
            match=r"Channel 'thumbnails-generate' is full: it holds its capacity of 2 message\(s\)"
            r" on layer 'default'.* CHANNEL_LAYERS\['default'\]\['CONFIG'\]\['channel_capacity'\]"
            r" = \{'thumbnails-generate': 20\}",
        ) as caught:
            send(CHANNEL, generate(3))
    assert isinstance(caught.value, ChannelFull)
    assert caught.value.channel == CHANNEL
    assert caught.value.capacity == 2
    with redis.Redis.from_url(redis_url) as client:
        assert [message["id"] for message in queued(client)] == [1, 2]


async def test_asend_to_a_full_channel_raises_channel_at_capacity(redis_url: str) -> None:
    with project_settings(redis_url, layer={"capacity": 1}):
        await asend(CHANNEL, generate(1))
        with pytest.raises(ChannelFull, match=r"capacity of 1 message"):
            await asend(CHANNEL, generate(2))


def test_send_on_a_layer_without_redis_checks_and_maps_a_full_channel() -> None:
    # No worker reads an in-process layer, so only a project that turned the check off sends.
    in_memory = {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1}}
    with override_settings(
        CHANNEL_LAYERS={"default": in_memory},
        ASGI_APPLICATION=APPLICATION,
        CHANNEL_WORKER={"UNKNOWN_CHANNEL": "off"},
    ):
        send(CHANNEL, generate(1))
        with pytest.raises(ChannelAtCapacity, match=r"capacity of 1 message"):
            send(CHANNEL, generate(2))
        with pytest.raises(InvalidChannelName, match="'thumb nail'"):
            send("thumb nail", generate(3))
        layer = get_channel_layer()
        assert async_to_sync(layer.receive)(CHANNEL) == generate(1)


# Unknown channels


def test_send_to_an_unknown_channel_is_refused_with_the_known_channels(
    on_redis: redis.Redis,
) -> None:
    with pytest.raises(
        UnknownChannel,
        match=r"No consumer for channel 'thumbnail' in ASGI_APPLICATION "
        r"'tests\.worker\.tasks_project\.asgi\.application': the message would wait unread "
        r"until it expires; did you mean 'thumbnails-\w+'\? known channels: "
        r"'thumbnails-delete', 'thumbnails-generate', and task channels 'tasks\.<queue_name>'",
    ):
        send("thumbnail", generate(1))
    assert on_redis.dbsize() == 0


def test_unknown_channel_only_warns_when_configured_to(redis_url: str) -> None:
    with project_settings(redis_url, worker={"UNKNOWN_CHANNEL": "warn"}):
        with pytest.warns(UnknownChannelWarning, match=r"No consumer for channel 'thumbnail'"):
            send("thumbnail", generate(1))
        with redis.Redis.from_url(redis_url) as client:
            assert queued(client, "asgithumbnail") == [generate(1)]


async def test_unknown_channel_check_can_be_turned_off(redis_url: str) -> None:
    with project_settings(redis_url, worker={"UNKNOWN_CHANNEL": "off"}):
        await asend("thumbnail", generate(1))


def test_unknown_channel_setting_is_checked(redis_url: str) -> None:
    with (
        project_settings(redis_url, worker={"UNKNOWN_CHANNEL": "loud"}),
        pytest.raises(
            ConfigurationError,
            match=r"CHANNEL_WORKER\['UNKNOWN_CHANNEL'\] is 'loud'; expected one of 'error', "
            r"'warn', 'off'",
        ),
    ):
        send("thumbnail", generate(1))


def test_task_channels_of_declared_queues_are_known(on_redis: redis.Redis) -> None:
    send("tasks.other", {"type": "task.run"})
    assert len(queued(on_redis, "asgitasks.other")) == 1


# After the transaction


def test_send_on_commit_sends_only_once_the_transaction_commits(on_redis: redis.Redis) -> None:
    with transaction.atomic():
        send_on_commit(CHANNEL, generate(1))
        assert queued(on_redis) == []
    assert queued(on_redis) == [generate(1)]


class RolledBack(Exception):
    pass


def test_send_on_commit_sends_nothing_after_a_rollback(on_redis: redis.Redis) -> None:
    with contextlib.suppress(RolledBack), transaction.atomic():
        send_on_commit(CHANNEL, generate(1))
        raise RolledBack
    assert queued(on_redis) == []
    # A later transaction's callbacks do not bring it back.
    with transaction.atomic():
        pass
    assert queued(on_redis) == []


def test_send_on_commit_checks_the_message_inside_the_view(on_redis: redis.Redis) -> None:
    with pytest.raises(UnknownChannel, match="'thumbnail'"), transaction.atomic():
        send_on_commit("thumbnail", generate(1))
    assert on_redis.dbsize() == 0


def test_send_on_commit_outside_a_transaction_sends_at_once(on_redis: redis.Redis) -> None:
    send_on_commit(CHANNEL, generate(1))
    assert queued(on_redis) == [generate(1)]
