"""``send()`` refuses messages no worker could ever handle, as it refuses unknown channels.

A task channel of an undeclared queue, a layer no worker can read (``InMemoryChannelLayer``)
and a message ``"type"`` the channel's Channels consumer has no method for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from channels.consumer import AsyncConsumer, SyncConsumer
from channels.layers import channel_layers
from channels.routing import ChannelNameRouter as ChannelsChannelNameRouter
from django.test import override_settings

from routing import ChannelNameRouter, ProtocolTypeRouter
from tests.worker.send_project import project_settings
from tests.worker.tasks_project import settings as project
from tests.worker.tasks_project.tasks import add
from worker.errors import (
    SendError,
    UnknownChannel,
    UnknownChannelWarning,
    UnknownMessageType,
    UnsupportedLayer,
)
from worker.sending.api import asend, send

pytestmark = pytest.mark.redis

APPLICATION = f"{__name__}.application"


class EmailConsumer(AsyncConsumer):  # type: ignore[misc]  # channels is untyped
    async def email_send(self, message: dict[str, Any]) -> None:
        pass

    async def email_bounce_report(self, message: dict[str, Any]) -> None:
        pass


class ReportConsumer(SyncConsumer):  # type: ignore[misc]
    def report_build(self, message: dict[str, Any]) -> None:
        pass


class OwnDispatch(AsyncConsumer):  # type: ignore[misc]
    """Routes by something other than the type, so any type may be right."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        pass


application = ProtocolTypeRouter(
    {
        "channel": ChannelNameRouter(
            {
                "email": EmailConsumer.as_asgi(),
                "reports": ReportConsumer.as_asgi(),
                "custom": OwnDispatch.as_asgi(),
            }
        )
    }
)
channels_application = ChannelsChannelNameRouter({"email": EmailConsumer.as_asgi()})


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with (
        project_settings(redis_url),
        override_settings(ASGI_APPLICATION=APPLICATION),
        redis.Redis.from_url(redis_url) as client,
    ):
        yield client


@pytest.fixture
def in_memory() -> Iterator[None]:
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(
        CHANNEL_LAYERS=layers, ASGI_APPLICATION=APPLICATION, TASKS=project.tasks()
    ):
        yield
    channel_layers.backends.clear()


# Message types


def test_a_type_the_consumer_has_no_method_for_is_refused_with_a_did_you_mean(
    client: redis.Redis,
) -> None:
    with pytest.raises(
        UnknownMessageType,
        match=r"^Consumer tests\.worker\.test_send_checks\.EmailConsumer of channel 'email' has "
        r"no method email_sned\(\) for message type 'email\.sned': each attempt would fail and "
        r"the message would be dead-lettered; did you mean 'email\.send'\? its handlers: "
        r"email_bounce_report\(\), email_send\(\)\. Channels calls the method named by the type",
    ) as caught:
        send("email", {"type": "email.sned", "to": "a@example.com"})
    assert isinstance(caught.value, SendError)
    assert isinstance(caught.value, ValueError)
    assert client.dbsize() == 0


async def test_asend_checks_types_of_sync_consumers_too(client: redis.Redis) -> None:
    with pytest.raises(UnknownMessageType, match=r"did you mean 'report\.build'\?"):
        await asend("reports", {"type": "report.biuld"})
    with pytest.raises(UnknownMessageType, match=r"no method _report_build\(\)"):
        await asend("reports", {"type": "_report.build"})
    await asend("reports", {"type": "report.build"})
    assert client.zcard("asgireports") == 1


def test_handled_types_are_sent_and_other_dispatch_is_trusted(client: redis.Redis) -> None:
    send("email", {"type": "email.send"})
    send("email", {"type": "email_bounce.report"})  # Channels maps it to the same method
    send("custom", {"type": "anything.goes"})
    assert (client.zcard("asgiemail"), client.zcard("asgicustom")) == (2, 1)


def test_channels_own_router_is_read_too(client: redis.Redis) -> None:
    with (
        override_settings(ASGI_APPLICATION=f"{__name__}.channels_application"),
        pytest.raises(UnknownMessageType, match=r"'email\.sned'"),
    ):
        send("email", {"type": "email.sned"})


def test_unknown_type_only_warns_or_passes_when_configured_to(redis_url: str) -> None:
    for mode in ("warn", "off"):
        with (
            project_settings(redis_url, worker={"UNKNOWN_CHANNEL": mode}),
            override_settings(ASGI_APPLICATION=APPLICATION),
        ):
            if mode == "warn":
                with pytest.warns(UnknownChannelWarning, match=r"no method email_sned\(\)"):
                    send("email", {"type": "email.sned"})
            else:
                send("email", {"type": "email.sned"})
    with redis.Redis.from_url(redis_url) as client:
        assert client.zcard("asgiemail") == 2


# Task channels


def test_a_task_channel_of_an_undeclared_queue_is_refused(client: redis.Redis) -> None:
    with pytest.raises(
        UnknownChannel,
        match=r"^No TASKS backend declares queue 'othr', so no worker runs task channel "
        r"'tasks\.othr': the message would wait unread until it expires; did you mean "
        r"tasks\.other\? declared queues: 'default', 'other'\. Add 'othr' to the QUEUES of a "
        r"worker\.tasks\.backend\.ChannelLayerBackend entry in TASKS",
    ):
        send("tasks.othr", {"type": "task.run"})
    send("tasks.default", {"type": "task.run"})
    assert client.keys("asgitasks.*") == [b"asgitasks.default"]


async def test_without_a_channel_layer_backend_no_task_queue_is_known(redis_url: str) -> None:
    immediate = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    with (
        project_settings(redis_url),
        override_settings(TASKS=immediate),
        pytest.raises(UnknownChannel, match=r"declared queues: \(none\)"),
    ):
        await asend("tasks.default", {"type": "task.run"})


def test_a_backend_without_queue_names_takes_any_queue(redis_url: str) -> None:
    backend = {"default": {"BACKEND": "worker.tasks.ChannelLayerBackend", "QUEUES": []}}
    with project_settings(redis_url), override_settings(TASKS=backend):
        send("tasks.anything", {"type": "task.run"})


# Layers no worker reads


def test_send_under_an_in_memory_layer_is_refused(in_memory: None) -> None:
    with pytest.raises(
        UnknownChannel,
        match=r"^No worker can read channel 'email': Channel layer 'default' is "
        r"channels\.layers\.InMemoryChannelLayer, which runworker cannot serve: it lives inside "
        r"one process",
    ):
        send("email", {"type": "email.send"})


async def test_asend_under_an_in_memory_layer_is_refused_or_warned(in_memory: None) -> None:
    with pytest.raises(UnknownChannel, match=r"No worker can read channel 'reports'"):
        await asend("reports", {"type": "report.build"})
    with (
        override_settings(CHANNEL_WORKER={"UNKNOWN_CHANNEL": "warn"}),
        pytest.warns(UnknownChannelWarning, match=r"InMemoryChannelLayer"),
    ):
        await asend("reports", {"type": "report.build"})


def test_enqueue_under_an_in_memory_layer_is_refused(in_memory: None) -> None:
    with pytest.raises(UnsupportedLayer, match=r"InMemoryChannelLayer, which runworker cannot"):
        add.enqueue(1, 2)
