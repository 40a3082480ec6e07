"""Routers nested behind middleware (django/channels#1428) and mark_router()."""

from __future__ import annotations

from typing import Any

import pytest
from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import AllowedHostsOriginValidator

from routing import NoRouteFound, URLRouter, mark_router
from routing.types import ASGIApp, Receive, Scope, Send
from tests.routing.asgi_fakes import (
    Middleware,
    Recorder,
    WebsocketClient,
    dispatch,
    route,
    websocket_scope,
)


class AppMiddleware:
    """Starlette-style middleware: the wrapped application is ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(
            {**scope, "middleware": (*scope.get("middleware", ()), "app")}, receive, send
        )


class ApplicationMiddleware:
    """OriginValidator-style middleware: the wrapped application is ``application``."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = (*scope.get("middleware", ()), "application")
        await self.application({**scope, "middleware": seen}, receive, send)


class TenantRouter:
    """Picks a router by a scope key: its routers sit in a dict, out of the unwrapping's sight."""

    def __init__(self, routers: dict[str, ASGIApp]) -> None:
        self.routers = routers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.routers[scope["tenant"]](scope, receive, send)


class RoomConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    async def connect(self) -> None:
        await self.accept()
        user = self.scope["user"]
        kwargs = self.scope["url_route"]["kwargs"]
        await self.send(text_data=f"{kwargs['room']} {kwargs.get('tenant')} {user.is_anonymous}")


def wrap(application: ASGIApp, levels: int) -> ASGIApp:
    for level in range(levels):
        application = Middleware(application, name=f"m{level}")
    return application


@pytest.mark.parametrize("levels", [1, 2, 3])
async def test_router_behind_middleware_routes_the_rest_of_the_path(levels: int) -> None:
    leaf, other = Recorder("leaf"), Recorder("other")
    inner = URLRouter([route("<int:room>/", leaf, {"live": True})])
    router = URLRouter([route("ws/<str:tenant>/", wrap(inner, levels)), route("ws/", other)])

    await dispatch(router, websocket_scope("/ws/acme/4/"))

    assert leaf.scope["url_route"] == {
        "args": (),
        "kwargs": {"tenant": "acme", "room": 4, "live": True},
    }
    assert leaf.scope["path_remaining"] == ""
    # Outermost first: the middleware each ran once, in order.
    assert leaf.scope["middleware"] == tuple(f"m{level}" for level in reversed(range(levels)))
    assert other.calls == []


@pytest.mark.parametrize("levels", [1, 2, 3])
async def test_routers_nested_behind_middleware_at_each_level(levels: int) -> None:
    leaf = Recorder()
    application: ASGIApp = URLRouter([route("<int:n>/", leaf)])
    for level in reversed(range(levels)):
        application = URLRouter([route(f"l{level}/", Middleware(application, name=f"m{level}"))])

    path = "/" + "".join(f"l{level}/" for level in range(levels)) + "7/"
    await dispatch(application, websocket_scope(path))

    assert leaf.scope["url_route"] == {"args": (), "kwargs": {"n": 7}}
    assert leaf.scope["middleware"] == tuple(f"m{level}" for level in range(levels))


async def test_router_behind_middleware_that_does_not_match_falls_through() -> None:
    inner_leaf, beta = Recorder("inner"), Recorder("beta")
    middleware = Middleware(URLRouter([route("alpha/", inner_leaf)]))
    router = URLRouter([route("ws/", middleware), route("ws/beta/", beta)])

    await dispatch(router, websocket_scope("/ws/beta/"))

    assert beta.scope["url_route"] == {"args": (), "kwargs": {}}
    # The miss was found before calling the middleware, which never ran.
    assert middleware.calls == 0


async def test_router_behind_middleware_reports_no_route_with_every_route_it_tried() -> None:
    router = URLRouter([route("ws/", Middleware(URLRouter([route("alpha/", Recorder())])))])

    with pytest.raises(
        NoRouteFound, match=r"^No route for path '/ws/beta/'; tried: 'ws/alpha/'\.$"
    ):
        await dispatch(router, websocket_scope("/ws/beta/"))


@pytest.mark.parametrize("middleware_class", [Middleware, AppMiddleware, ApplicationMiddleware])
async def test_router_is_found_behind_middleware_under_each_attribute_name(
    middleware_class: Any,
) -> None:
    leaf = Recorder()
    router = URLRouter([route("ws/", middleware_class(URLRouter([route("<int:room>/", leaf)])))])

    await dispatch(router, websocket_scope("/ws/5/"))

    assert leaf.scope["url_route"]["kwargs"] == {"room": 5}
    assert len(leaf.scope["middleware"]) == 1


async def test_middleware_wrapped_consumer_stays_an_endpoint() -> None:
    leaf = Recorder()
    router = URLRouter([route("ws/echo/", Middleware(Middleware(leaf)))])

    await dispatch(router, websocket_scope("/ws/echo/"))
    with pytest.raises(
        NoRouteFound, match=r"^No route for path '/ws/echo/extra/'; tried: 'ws/echo/'"
    ):
        await dispatch(router, websocket_scope("/ws/echo/extra/"))

    assert leaf.scope["path_remaining"] == ""


def test_consumer_behind_auth_middleware_stack_stays_an_endpoint() -> None:
    consumer = RoomConsumer.as_asgi()
    stack = AuthMiddlewareStack(consumer)
    router = URLRouter([route("ws/<str:room>/", stack)])

    assert router.resolve("/ws/lobby/") == (stack, "", (), {"room": "lobby"})
    assert router.resolve("/ws/lobby/more/") is None


def test_middleware_that_wraps_itself_is_an_endpoint() -> None:
    looping = Middleware(Recorder())
    looping.inner = looping
    router = URLRouter([route("ws/", looping)])

    assert router.resolve("/ws/") == (looping, "", (), {})
    assert router.resolve("/ws/more/") is None


async def test_mark_router_makes_an_opaque_wrapper_a_prefix_route() -> None:
    acme_leaf, other_leaf = Recorder("acme"), Recorder("other")
    tenants = TenantRouter(
        {
            "acme": URLRouter([route("<int:room>/", acme_leaf)]),
            "other": URLRouter([route("lobby/", other_leaf)]),
        }
    )

    marked = mark_router(tenants)
    router = URLRouter([route("ws/<str:name>/", marked)])
    await dispatch(router, websocket_scope("/ws/x/3/", tenant="acme"))
    await dispatch(router, websocket_scope("/ws/y/lobby/", tenant="other"))

    assert marked is tenants
    assert acme_leaf.scope["url_route"] == {"args": (), "kwargs": {"name": "x", "room": 3}}
    assert other_leaf.scope["url_route"] == {"args": (), "kwargs": {"name": "y"}}


async def test_opaque_wrapper_without_mark_router_is_an_endpoint() -> None:
    tenants = TenantRouter({"acme": URLRouter([route("<int:room>/", Recorder())])})
    router = URLRouter([route("ws/", tenants)])

    with pytest.raises(NoRouteFound, match=r"^No route for path '/ws/3/'; tried: 'ws/'\.$"):
        await dispatch(router, websocket_scope("/ws/3/", tenant="acme"))


async def test_router_behind_mark_router_reports_its_own_miss() -> None:
    tenants = mark_router(TenantRouter({"acme": URLRouter([route("<int:room>/", Recorder())])}))
    router = URLRouter([route("ws/", tenants)])

    # The wrapper hides its routers, so the miss can only surface when the inner router runs.
    with pytest.raises(
        NoRouteFound,
        match=r"^No route for path '/ws/lobby/' \(remaining 'lobby/'\); tried: '<int:room>/'\.$",
    ):
        await dispatch(router, websocket_scope("/ws/lobby/", tenant="acme"))


async def test_mark_router_also_marks_a_function() -> None:
    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        await Recorder()(scope, receive, send)

    assert mark_router(application) is application
    assert getattr(application, "_path_routing") is True  # noqa: B009


async def test_router_behind_auth_middleware_stack_routes_an_anonymous_connection() -> None:
    application = URLRouter(
        [
            route(
                "ws/<str:tenant>/",
                AuthMiddlewareStack(URLRouter([route("<str:room>/", RoomConsumer.as_asgi())])),
            )
        ]
    )
    client = WebsocketClient(application, "/ws/acme/lobby/")

    connected, _ = await client.connect()
    greeting = await client.receive_from()
    await client.disconnect()

    assert connected
    assert greeting == "lobby acme True"


def allowed_hosts_application() -> ASGIApp:
    stack: ASGIApp = AllowedHostsOriginValidator(
        AuthMiddlewareStack(URLRouter([route("<str:room>/", RoomConsumer.as_asgi())]))
    )
    return URLRouter([route("ws/chat/", stack)])


async def test_router_behind_origin_validator_and_auth_accepts_an_allowed_origin() -> None:
    client = WebsocketClient(
        allowed_hosts_application(), "/ws/chat/lobby/", headers=[(b"origin", b"http://testserver")]
    )

    connected, _ = await client.connect()
    greeting = await client.receive_from()
    await client.disconnect()

    assert connected
    assert greeting == "lobby None True"


async def test_router_behind_origin_validator_rejects_a_foreign_origin() -> None:
    client = WebsocketClient(
        allowed_hosts_application(),
        "/ws/chat/lobby/",
        headers=[(b"origin", b"http://evil.example")],
    )

    connected, answer = await client.connect()
    # The server answers a close with the disconnect that ends the application.
    await client.disconnect()

    assert not connected
    assert answer["type"] == "websocket.close"


async def test_origin_validator_around_the_whole_router() -> None:
    application = AllowedHostsOriginValidator(
        AuthMiddlewareStack(
            URLRouter(
                [route("ws/chat/", URLRouter([route("<str:room>/", RoomConsumer.as_asgi())]))]
            )
        )
    )
    client = WebsocketClient(
        application, "/ws/chat/lobby/", headers=[(b"origin", b"http://localhost")]
    )

    connected, _ = await client.connect()
    greeting = await client.receive_from()
    await client.disconnect()

    assert connected
    assert greeting == "lobby None True"
