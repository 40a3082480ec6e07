"""ProtocolTypeRouter: dispatch on scope["type"], Django's ASGI application for http by default."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer

from routing import (
    ChannelNameRouter,
    InvalidApplication,
    MissingScopeKey,
    ProtocolTypeRouter,
    RoutingError,
    UnknownProtocol,
    URLRouter,
)
from tests.routing.asgi_fakes import Communicator, Recorder, WebsocketClient, receive, route, send

REPOSITORY = Path(__file__).resolve().parents[2]


class EchoConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=f"echo: {text_data}")


async def test_protocol_router_dispatches_on_scope_type() -> None:
    websocket, channel = Recorder("websocket"), Recorder("channel")
    router = ProtocolTypeRouter({"websocket": websocket, "channel": channel})

    await router({"type": "channel", "channel": "email"}, receive, send)
    await router({"type": "websocket", "path": "/"}, receive, send)

    assert channel.scope == {"type": "channel", "channel": "email"}
    assert websocket.scope == {"type": "websocket", "path": "/"}


async def test_protocol_router_passes_scope_receive_and_send_unchanged() -> None:
    websocket = Recorder()
    scope = {"type": "websocket", "path": "/ws/"}

    await ProtocolTypeRouter({"websocket": websocket})(scope, receive, send)

    [(seen_scope, seen_receive, seen_send)] = websocket.calls
    assert seen_scope is scope
    assert seen_receive is receive
    assert seen_send is send
    assert scope == {"type": "websocket", "path": "/ws/"}


async def test_protocol_router_uses_the_given_http_application() -> None:
    http = Recorder("http")
    router = ProtocolTypeRouter({"http": http})

    await router({"type": "http", "path": "/"}, receive, send)

    assert http.scope["type"] == "http"
    assert router.applications["http"] is http


def test_protocol_router_exposes_the_mapping_under_channels_name() -> None:
    websocket = Recorder()
    router = ProtocolTypeRouter({"websocket": websocket})

    assert router.application_mapping is router.applications
    assert router.application_mapping["websocket"] is websocket
    assert set(router.application_mapping) == {"http", "websocket"}


def test_protocol_router_leaves_the_callers_mapping_alone() -> None:
    websocket = Recorder()
    mapping = {"websocket": websocket}

    ProtocolTypeRouter(mapping)

    assert mapping == {"websocket": websocket}


async def test_protocol_router_builds_django_application_lazily_on_first_http_scope(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    django_application = Recorder("django")
    built: list[int] = []

    def fake_get_asgi_application() -> Recorder:
        built.append(1)
        return django_application

    monkeypatch.setattr("django.core.asgi.get_asgi_application", fake_get_asgi_application)
    router = ProtocolTypeRouter({"websocket": Recorder()})
    await router({"type": "websocket", "path": "/"}, receive, send)
    assert built == []

    await router({"type": "http", "path": "/one/"}, receive, send)
    await router({"type": "http", "path": "/two/"}, receive, send)

    assert built == [1]
    assert [scope["path"] for scope, _, _ in django_application.calls] == ["/one/", "/two/"]
    assert router.applications["http"] is django_application


async def test_protocol_router_default_http_is_djangos_asgi_handler() -> None:
    router = ProtocolTypeRouter({"websocket": Recorder()})
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/no-such-page/",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
    }
    client = Communicator(router, scope)

    await client.send_input({"type": "http.request", "body": b""})
    start = await client.receive_output()
    await client.receive_output()
    await client.wait()

    # tests.urls has no views: Django itself answers, with its 404.
    assert start["type"] == "http.response.start"
    assert start["status"] == 404
    assert type(router.applications["http"]).__name__ == "ASGIHandler"


def test_importing_and_constructing_routers_does_not_need_settings() -> None:
    code = textwrap.dedent(
        """
        import routing
        from django.conf import settings
        from django.urls import path

        async def app(scope, receive, send):
            pass

        routing.ProtocolTypeRouter({
            "websocket": routing.URLRouter([path("ws/<int:room>/", app)]),
            "channel": routing.ChannelNameRouter({"email": app}),
        })
        assert not settings.configured, "settings were configured"
        print("ok")
        """
    )
    environment = {
        key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"
    }

    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


async def test_protocol_router_rejects_unknown_type_naming_known_types() -> None:
    router = ProtocolTypeRouter({"websocket": Recorder(), "channel": Recorder()})

    with pytest.raises(
        UnknownProtocol,
        match=r"^No application for scope type 'lifespan'; "
        r"known types: 'channel', 'http', 'websocket'\.$",
    ):
        await router({"type": "lifespan"}, receive, send)


async def test_protocol_router_rejects_scope_without_type() -> None:
    router = ProtocolTypeRouter({"websocket": Recorder()})

    with pytest.raises(MissingScopeKey, match=r"^ProtocolTypeRouter got a scope without a 'type'"):
        await router({"path": "/"}, receive, send)


async def test_protocol_router_errors_are_value_errors() -> None:
    router = ProtocolTypeRouter({"websocket": Recorder()})

    with pytest.raises(ValueError, match="'lifespan'") as caught:
        await router({"type": "lifespan"}, receive, send)
    assert isinstance(caught.value, RoutingError)

    with pytest.raises(KeyError):
        await router({}, receive, send)


async def test_protocol_router_runs_an_unmodified_websocket_consumer() -> None:
    application = ProtocolTypeRouter(
        {"websocket": URLRouter([route("ws/echo/", EchoConsumer.as_asgi())])}
    )
    communicator = WebsocketClient(application, "/ws/echo/")

    connected, _ = await communicator.connect()
    await communicator.send_to(text_data="hello")
    reply = await communicator.receive_from()
    await communicator.disconnect()

    assert connected
    assert reply == "echo: hello"


async def test_protocol_router_nests_a_channel_name_router() -> None:
    email = Recorder("email")
    application = ProtocolTypeRouter({"channel": ChannelNameRouter({"email": email})})
    scope = {"type": "channel", "channel": "email"}

    await application(scope, receive, send)

    assert email.scope is scope


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        pytest.param(
            {"websocket": "chat.consumers.ChatConsumer"},
            r"^ProtocolTypeRouter\['websocket'\] is 'chat\.consumers\.ChatConsumer', which is "
            r"not an ASGI application; expected an `async def app\(scope, receive, send\)`",
            id="not-callable",
        ),
        pytest.param(
            {"websocket": EchoConsumer},
            r"^ProtocolTypeRouter\['websocket'\] is the consumer class EchoConsumer; "
            r"pass EchoConsumer\.as_asgi\(\) instead\.$",
            id="consumer-class",
        ),
        pytest.param(
            {b"websocket": Recorder()},
            r"^ProtocolTypeRouter keys must be scope types strings, got b'websocket' \(bytes\)\.$",
            id="bytes-key",
        ),
        pytest.param(
            [("websocket", Recorder())],
            r"^ProtocolTypeRouter expects a mapping of scope types to ASGI applications, "
            r"got \[\('websocket', Recorder\('app'\)\)\]\.$",
            id="not-a-mapping",
        ),
    ],
)
def test_protocol_router_rejects_bad_configuration_at_construction(
    mapping: Any, message: str
) -> None:
    with pytest.raises(InvalidApplication, match=message):
        ProtocolTypeRouter(mapping)
