"""Recording ASGI applications, middleware and typed route helpers for the routing tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

import channels.routing
from asgiref.testing import ApplicationCommunicator
from django.urls import URLPattern, path, re_path
from django.urls.exceptions import Resolver404

import routing
from routing.types import ASGIApp, Message, Receive, Scope, Send


class Recorder:
    """An ASGI application that keeps each ``(scope, receive, send)`` it is called with."""

    def __init__(self, name: str = "app") -> None:
        self.name = name
        self.calls: list[tuple[Scope, Receive, Send]] = []

    def __repr__(self) -> str:
        return f"Recorder({self.name!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append((scope, receive, send))

    @property
    def scope(self) -> Scope:
        """The scope of the one call this application got."""
        assert len(self.calls) == 1, f"{self!r} was called {len(self.calls)} times"
        return self.calls[0][0]


class Middleware:
    """Channels-style middleware keeping the application it wraps as ``inner``.

    Adds ``scope["middleware"]``, the names of the middleware passed through, outermost first.
    """

    def __init__(self, inner: ASGIApp, name: str = "middleware") -> None:
        self.inner = inner
        self.name = name
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        seen = (*scope.get("middleware", ()), self.name)
        await self.inner({**scope, "middleware": seen}, receive, send)


async def receive() -> Message:
    return {"type": "websocket.connect"}


async def send(message: Message) -> None:
    return None


def route(pattern: str, application: Any, kwargs: dict[str, Any] | None = None) -> URLPattern:
    """``path()`` for an ASGI application (django-stubs types the view as a Django view)."""
    url_pattern: URLPattern = path(pattern, application, kwargs)
    return url_pattern


def regex_route(pattern: str, application: Any, kwargs: dict[str, Any] | None = None) -> URLPattern:
    """``re_path()`` for an ASGI application."""
    url_pattern: URLPattern = re_path(pattern, application, kwargs)
    return url_pattern


def websocket_scope(path: str, **extra: Any) -> Scope:
    return {"type": "websocket", "path": path, **extra}


async def dispatch(application: ASGIApp, scope: Scope) -> None:
    """Call ``application`` with ``scope`` and the module's receive and send."""
    await application(scope, receive, send)


# Which leaf a path reached and what it saw (leaf name, args, kwargs, path_remaining), or None
# when the router found no route.
Outcome: TypeAlias = tuple[str, tuple[Any, ...], dict[str, Any], str] | None
# Builds a route table from a leaf factory (a name in, an application out) and a router class.
TableBuilder: TypeAlias = Callable[
    [Callable[[str], ASGIApp], Callable[[list[URLPattern]], ASGIApp]], list[URLPattern]
]


async def outcome_of(
    builder: TableBuilder,
    router_class: Any,
    path: str,
    no_route: tuple[type[Exception], ...] = (routing.NoRouteFound,),
) -> Outcome:
    """Route ``path`` through a fresh table built for ``router_class`` and report what happened.

    Each router gets its own table: Channels' router rewrites the routes it is given. The
    ``no_route`` errors mean no route matched; any other error fails the test.
    """
    reached: list[tuple[str, Scope]] = []

    def leaf(name: str) -> ASGIApp:
        async def application(scope: Scope, receive: Receive, send: Send) -> None:
            reached.append((name, scope))

        return application

    router = router_class(builder(leaf, router_class))
    try:
        await router({"type": "websocket", "path": path}, receive, send)
    except no_route:
        return None
    [(name, scope)] = reached
    url_route = scope["url_route"]
    return name, tuple(url_route["args"]), dict(url_route["kwargs"]), scope["path_remaining"]


async def outcomes(builder: TableBuilder, path: str) -> tuple[Outcome, Outcome]:
    """What Channels' URLRouter and ours do with ``path`` on the same table."""
    # Channels raises a bare ValueError, or Resolver404 from a nested router; ours NoRouteFound.
    theirs = await outcome_of(
        builder, channels.routing.URLRouter, path, no_route=(ValueError, Resolver404)
    )
    ours = await outcome_of(builder, routing.URLRouter, path)
    return theirs, ours


class Communicator:
    """Runs one application instance in the test's event loop: asgiref's communicator, typed."""

    def __init__(self, application: ASGIApp, scope: Scope) -> None:
        self.scope = scope
        self._communicator = ApplicationCommunicator(application, scope)  # type: ignore[no-untyped-call]

    async def send_input(self, message: Message) -> None:
        await self._communicator.send_input(message)  # type: ignore[no-untyped-call]

    async def receive_output(self, timeout_s: float = 1) -> Message:
        message: Message = await self._communicator.receive_output(timeout_s)  # type: ignore[no-untyped-call]
        return message

    async def wait(self, timeout_s: float = 1) -> None:
        """Wait for the application to return, raising what it raised."""
        await self._communicator.wait(timeout_s)  # type: ignore[no-untyped-call]


class WebsocketClient(Communicator):
    """The client end of one websocket connection.

    The same steps as ``channels.testing.WebsocketCommunicator``, whose package also imports
    ``daphne``, which this project does not install.
    """

    def __init__(
        self, application: ASGIApp, path: str, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        scope: Scope = {
            "type": "websocket",
            "path": path,
            "query_string": b"",
            "headers": list(headers),
            "subprotocols": [],
        }
        super().__init__(application, scope)

    async def connect(self) -> tuple[bool, Message]:
        """Open the connection: whether the application accepted it, and its answer."""
        await self.send_input({"type": "websocket.connect"})
        answer = await self.receive_output()
        return answer["type"] == "websocket.accept", answer

    async def send_to(self, text_data: str) -> None:
        await self.send_input({"type": "websocket.receive", "text": text_data})

    async def receive_from(self) -> str:
        message = await self.receive_output()
        assert message["type"] == "websocket.send", message
        text: str = message["text"]
        return text

    async def disconnect(self) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.wait()
