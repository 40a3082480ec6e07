"""Every router returns what the application it dispatched to returned, as Channels' routers do."""

from __future__ import annotations

from typing import Any

import pytest
from channels.middleware import BaseMiddleware

from routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter, mark_router
from routing.types import ASGIApp, Receive, Scope, Send
from tests.routing.asgi_fakes import receive, regex_route, route, send, websocket_scope


class Returns:
    """An ASGI application that returns a given value (Channels' routing tests use such doubles)."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> object:
        self.scopes.append(scope)
        return self.value


class ReturningMiddleware:
    """Keeps its application where unwrapping does not look, so only mark_router() declares it."""

    def __init__(self, inner: ASGIApp) -> None:
        self._hidden = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        return await self._hidden(scope, receive, send)


async def call(application: ASGIApp, scope: Scope) -> Any:
    """The application's return value for ``scope`` (``dispatch()`` drops it)."""
    return await application(scope, receive, send)


async def test_protocol_type_router_returns_the_application_value() -> None:
    router = ProtocolTypeRouter({"websocket": Returns("ws"), "http": Returns("http")})

    assert await call(router, {"type": "websocket", "path": "/"}) == "ws"
    assert await call(router, {"type": "http", "path": "/"}) == "http"


async def test_channel_name_router_returns_the_application_value() -> None:
    router = ChannelNameRouter({"email": Returns(1), "thumbnails": Returns(2)})

    assert await call(router, {"type": "channel", "channel": "email"}) == 1
    assert await call(router, {"type": "channel", "channel": "thumbnails"}) == 2


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/", 1), ("/foo/", 2), ("/bar/baz/", 3), ("/posarg/123/", 4), ("/kwarg/hello/", 5)],
)
async def test_url_router_returns_the_matched_application_value(path: str, expected: int) -> None:
    router = URLRouter(
        [
            route("", Returns(1)),
            route("foo/", Returns(2)),
            regex_route(r"bar", Returns(3)),
            regex_route(r"^posarg/(\d+)/$", Returns(4)),
            route("kwarg/<str:name>/", Returns(5)),
        ]
    )

    assert await call(router, websocket_scope(path)) == expected


async def test_url_router_returns_the_value_under_a_root_path() -> None:
    router = URLRouter([route("foo/", Returns("foo"))])

    assert await call(router, websocket_scope("/root/foo/", root_path="/root")) == "foo"


async def test_nested_routers_return_the_innermost_value_through_every_level() -> None:
    leaf = Returns("leaf")
    inner = URLRouter([route("test/<int:page>/", leaf)])
    outer = URLRouter([route("number/<int:number>/", inner)])
    application = ProtocolTypeRouter({"websocket": URLRouter([route("", outer)])})

    assert await call(application, websocket_scope("/number/42/test/3/")) == "leaf"
    assert leaf.scopes[0]["url_route"]["kwargs"] == {"number": 42, "page": 3}


async def test_a_router_behind_middleware_returns_the_value() -> None:
    inner = URLRouter([route("room/<int:room>/", Returns("room"))])
    outer = URLRouter(
        [
            route("channels/", BaseMiddleware(inner)),
            route("marked/", mark_router(ReturningMiddleware(inner))),
        ]
    )

    assert await call(outer, websocket_scope("/channels/room/1/")) == "room"
    assert await call(outer, websocket_scope("/marked/room/2/")) == "room"
