"""ChannelNameRouter: dispatch worker scopes on scope["channel"]."""

from __future__ import annotations

from typing import Any

import pytest
from channels.consumer import AsyncConsumer, StopConsumer, SyncConsumer

from routing import (
    ChannelNameRouter,
    InvalidApplication,
    MissingScopeKey,
    ProtocolTypeRouter,
    RoutingError,
    UnknownChannel,
)
from tests.routing.asgi_fakes import Communicator, Recorder, receive, send


class AsyncThumbnailConsumer(AsyncConsumer):  # type: ignore[misc]  # channels is untyped
    async def thumbnail_generate(self, message: dict[str, Any]) -> None:
        await self.send({"type": "thumbnail.done", "id": message["id"], "by": "async"})
        raise StopConsumer


class SyncThumbnailConsumer(SyncConsumer):  # type: ignore[misc]  # channels is untyped
    def thumbnail_delete(self, message: dict[str, Any]) -> None:
        self.send({"type": "thumbnail.deleted", "id": message["id"], "by": "sync"})
        raise StopConsumer


def thumbnail_router(**applications: Any) -> ChannelNameRouter:
    return ChannelNameRouter(
        {
            "thumbnails-generate": applications.get("generate", Recorder("generate")),
            "thumbnails-delete": applications.get("delete", Recorder("delete")),
        }
    )


async def test_channel_router_dispatches_on_channel_name() -> None:
    generate, delete = Recorder("generate"), Recorder("delete")
    router = thumbnail_router(generate=generate, delete=delete)

    await router({"type": "channel", "channel": "thumbnails-delete"}, receive, send)

    assert delete.scope == {"type": "channel", "channel": "thumbnails-delete"}
    assert generate.calls == []


async def test_channel_router_passes_scope_receive_and_send_unchanged() -> None:
    generate = Recorder()
    scope = {"type": "channel", "channel": "thumbnails-generate"}

    await thumbnail_router(generate=generate)(scope, receive, send)

    [(seen_scope, seen_receive, seen_send)] = generate.calls
    assert seen_scope is scope
    assert seen_receive is receive
    assert seen_send is send
    assert scope == {"type": "channel", "channel": "thumbnails-generate"}


def test_channel_router_lists_its_channels() -> None:
    router = thumbnail_router()

    assert router.channels == frozenset({"thumbnails-generate", "thumbnails-delete"})
    assert router.application_mapping is router.applications


def test_channel_router_leaves_the_callers_mapping_alone() -> None:
    email = Recorder()
    mapping = {"email": email}

    router = ChannelNameRouter(mapping)
    mapping["sms"] = Recorder()

    assert router.channels == frozenset({"email"})


async def test_channel_router_rejects_unknown_channel_naming_known_channels() -> None:
    router = thumbnail_router()

    with pytest.raises(
        UnknownChannel,
        match=r"^No application for channel 'thumbnail'; "
        r"known channels: 'thumbnails-delete', 'thumbnails-generate'\.$",
    ):
        await router({"type": "channel", "channel": "thumbnail"}, receive, send)


async def test_channel_router_without_channels_says_none_are_known() -> None:
    with pytest.raises(UnknownChannel, match=r"known channels: \(none\)\.$"):
        await ChannelNameRouter({})({"type": "channel", "channel": "email"}, receive, send)


async def test_channel_router_rejects_scope_without_channel() -> None:
    router = thumbnail_router()

    with pytest.raises(
        MissingScopeKey,
        match=r"^ChannelNameRouter got a scope without a 'channel' key \(type 'websocket'\); "
        r"use it only for 'channel' scopes, under ProtocolTypeRouter\(\{'channel': \.\.\.\}\)\.$",
    ):
        await router({"type": "websocket", "path": "/"}, receive, send)


async def test_channel_router_errors_are_value_errors() -> None:
    router = thumbnail_router()

    with pytest.raises(ValueError, match="'thumbnail'") as caught:
        await router({"type": "channel", "channel": "thumbnail"}, receive, send)
    assert isinstance(caught.value, RoutingError)

    with pytest.raises(KeyError):
        await router({"type": "channel"}, receive, send)


async def test_channel_router_runs_an_unmodified_async_consumer() -> None:
    router = ProtocolTypeRouter(
        {"channel": thumbnail_router(generate=AsyncThumbnailConsumer.as_asgi())}
    )
    worker = Communicator(router, {"type": "channel", "channel": "thumbnails-generate"})

    await worker.send_input({"type": "thumbnail.generate", "id": 7})
    reply = await worker.receive_output()
    await worker.wait()

    assert reply == {"type": "thumbnail.done", "id": 7, "by": "async"}


async def test_channel_router_runs_an_unmodified_sync_consumer() -> None:
    router = thumbnail_router(delete=SyncThumbnailConsumer.as_asgi())
    worker = Communicator(router, {"type": "channel", "channel": "thumbnails-delete"})

    await worker.send_input({"type": "thumbnail.delete", "id": 8})
    reply = await worker.receive_output()
    await worker.wait()

    assert reply == {"type": "thumbnail.deleted", "id": 8, "by": "sync"}


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        pytest.param(
            {"email": None},
            r"^ChannelNameRouter\['email'\] is None, which is not an ASGI application; "
            r"expected an `async def app\(scope, receive, send\)` callable such as "
            r"Consumer\.as_asgi\(\) or a router\.$",
            id="not-callable",
        ),
        pytest.param(
            {"thumbnails-generate": AsyncThumbnailConsumer},
            r"^ChannelNameRouter\['thumbnails-generate'\] is the consumer class "
            r"AsyncThumbnailConsumer; pass AsyncThumbnailConsumer\.as_asgi\(\) instead\.$",
            id="consumer-class",
        ),
        pytest.param(
            {("email",): Recorder()},
            r"^ChannelNameRouter keys must be channel names strings, got \('email',\) \(tuple\)\.$",
            id="tuple-key",
        ),
        pytest.param(
            "email",
            r"^ChannelNameRouter expects a mapping of channel names to ASGI applications, "
            r"got 'email'\.$",
            id="not-a-mapping",
        ),
    ],
)
def test_channel_router_rejects_bad_configuration_at_construction(
    mapping: Any, message: str
) -> None:
    with pytest.raises(InvalidApplication, match=message):
        ChannelNameRouter(mapping)
