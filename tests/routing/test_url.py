"""URLRouter: path()/re_path() routes, captures, nesting, root_path, errors, the ASGI contract."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import channels.routing
import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, include, path, register_converter
from django.urls.exceptions import Resolver404
from django.urls.resolvers import LocalePrefixPattern, RegexPattern

from routing import (
    IncludeNotSupported,
    InvalidApplication,
    InvalidRoute,
    MissingScopeKey,
    NoRouteFound,
    RoutingError,
    URLRouter,
)
from tests.routing.asgi_fakes import (
    Recorder,
    WebsocketClient,
    dispatch,
    receive,
    regex_route,
    route,
    send,
    websocket_scope,
)


class FourDigitYearConverter:
    """A custom converter: four digits, and only years from 1900 on."""

    regex = "[0-9]{4}"

    def to_python(self, value: str) -> int:
        year = int(value)
        if year < 1900:
            raise ValueError(f"{year} is before 1900")
        return year

    def to_url(self, value: int) -> str:
        return f"{value:04d}"


# Django's path() refuses a non-callable view itself, so such a route is built by hand.
NOT_AN_APPLICATION: Any = "chat.consumers.Room"

# Once per process: newer Django refuses to register a converter name twice.
register_converter(FourDigitYearConverter, "routing_test_year")


class RoomConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    async def connect(self) -> None:
        await self.accept()
        room = self.scope["url_route"]["kwargs"]["room"]
        await self.send(text_data=f"{room}:{self.scope['path_remaining']!r}")


# Captures


async def test_url_router_routes_a_literal_path_with_empty_url_route() -> None:
    notify = Recorder()
    router = URLRouter([route("ws/notify/", notify)])

    await dispatch(router, websocket_scope("/ws/notify/"))

    assert notify.scope["url_route"] == {"args": (), "kwargs": {}}
    assert notify.scope["path_remaining"] == ""


@pytest.mark.parametrize(
    ("pattern", "path", "kwargs"),
    [
        pytest.param("ws/room/<int:room>/", "/ws/room/42/", {"room": 42}, id="int"),
        pytest.param("ws/room/<str:room>/", "/ws/room/lobby-1/", {"room": "lobby-1"}, id="str"),
        pytest.param("ws/room/<room>/", "/ws/room/lobby/", {"room": "lobby"}, id="default-str"),
        pytest.param(
            "ws/room/<slug:room>/", "/ws/room/my_room-2/", {"room": "my_room-2"}, id="slug"
        ),
        pytest.param(
            "ws/room/<uuid:room>/",
            "/ws/room/6f1c1a1e-9d2b-4c1e-8f7a-0a1b2c3d4e5f/",
            {"room": uuid.UUID("6f1c1a1e-9d2b-4c1e-8f7a-0a1b2c3d4e5f")},
            id="uuid",
        ),
        pytest.param(
            "ws/files/<path:file>", "/ws/files/a/b/c.txt", {"file": "a/b/c.txt"}, id="path"
        ),
        pytest.param(
            "ws/archive/<routing_test_year:year>/", "/ws/archive/2024/", {"year": 2024}, id="custom"
        ),
        pytest.param(
            "ws/<str:user>/<int:page>/<slug:tag>/",
            "/ws/ada/3/py-thon/",
            {"user": "ada", "page": 3, "tag": "py-thon"},
            id="several",
        ),
    ],
)
async def test_url_router_converts_captured_values(
    pattern: str, path: str, kwargs: dict[str, Any]
) -> None:
    leaf = Recorder()

    await dispatch(URLRouter([route(pattern, leaf)]), websocket_scope(path))

    assert leaf.scope["url_route"] == {"args": (), "kwargs": kwargs}
    assert [type(value) for value in leaf.scope["url_route"]["kwargs"].values()] == [
        type(value) for value in kwargs.values()
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/ws/room/abc/",
        "/ws/room/-1/",
        "/ws/room/1/2/",
        "/ws/room/1",
    ],
)
async def test_url_router_skips_a_route_whose_converter_does_not_match(path: str) -> None:
    by_id, fallback = Recorder("by_id"), Recorder("fallback")
    router = URLRouter(
        [route("ws/room/<int:room>/", by_id), route("ws/room/<path:rest>", fallback)]
    )

    await dispatch(router, websocket_scope(path))

    assert by_id.calls == []
    assert fallback.scope["url_route"]["kwargs"] == {"rest": path.removeprefix("/ws/room/")}


async def test_url_router_falls_through_when_a_converter_rejects_the_value() -> None:
    archive, old = Recorder("archive"), Recorder("old")
    router = URLRouter(
        [
            route("ws/archive/<routing_test_year:year>/", archive),
            route("ws/archive/<int:year>/", old),
        ]
    )

    await dispatch(router, websocket_scope("/ws/archive/1850/"))
    await dispatch(router, websocket_scope("/ws/archive/1999/"))

    assert old.scope["url_route"]["kwargs"] == {"year": 1850}
    assert archive.scope["url_route"]["kwargs"] == {"year": 1999}


async def test_url_router_merges_route_default_kwargs_over_captures() -> None:
    leaf = Recorder()
    router = URLRouter([route("ws/<int:page>/<str:tab>/", leaf, {"tab": "all", "live": True})])

    await dispatch(router, websocket_scope("/ws/3/recent/"))

    # As in Django and Channels, the route's kwargs win over the captured ones.
    assert leaf.scope["url_route"] == {
        "args": (),
        "kwargs": {"page": 3, "tab": "all", "live": True},
    }


async def test_url_router_gives_each_connection_its_own_kwargs() -> None:
    leaf = Recorder()
    defaults = {"options": "x"}
    router = URLRouter([route("ws/<int:room>/", leaf, defaults)])

    await dispatch(router, websocket_scope("/ws/1/"))
    leaf.calls[0][0]["url_route"]["kwargs"]["room"] = "changed"
    await dispatch(router, websocket_scope("/ws/2/"))

    assert leaf.calls[1][0]["url_route"]["kwargs"] == {"room": 2, "options": "x"}
    assert defaults == {"options": "x"}


async def test_url_router_puts_named_regex_groups_in_kwargs() -> None:
    leaf = Recorder()
    router = URLRouter([regex_route(r"^ws/(?P<room>\w+)/(?P<page>\d+)/$", leaf)])

    await dispatch(router, websocket_scope("/ws/lobby/7/"))

    assert leaf.scope["url_route"] == {"args": (), "kwargs": {"room": "lobby", "page": "7"}}


async def test_url_router_puts_unnamed_regex_groups_in_args() -> None:
    leaf = Recorder()
    router = URLRouter([regex_route(r"^ws/(\w+)/(\d+)/$", leaf)])

    await dispatch(router, websocket_scope("/ws/lobby/7/"))

    assert leaf.scope["url_route"] == {"args": ("lobby", "7"), "kwargs": {}}


async def test_url_router_drops_unnamed_groups_once_a_named_group_matched() -> None:
    leaf = Recorder()
    router = URLRouter([regex_route(r"^ws/(\w+)/(?P<page>\d+)/$", leaf)])

    await dispatch(router, websocket_scope("/ws/lobby/7/"))

    assert leaf.scope["url_route"] == {"args": (), "kwargs": {"page": "7"}}


async def test_url_router_omits_optional_named_groups_that_did_not_match() -> None:
    leaf = Recorder()
    router = URLRouter([regex_route(r"^ws/(?P<room>\w+)/(?:(?P<page>\d+)/)?$", leaf)])

    await dispatch(router, websocket_scope("/ws/lobby/"))

    assert leaf.scope["url_route"] == {"args": (), "kwargs": {"room": "lobby"}}


async def test_url_router_regex_endpoint_with_dollar_must_match_the_whole_path() -> None:
    leaf = Recorder()
    router = URLRouter([regex_route(r"^ws/chat/$", leaf)])

    with pytest.raises(NoRouteFound):
        await dispatch(router, websocket_scope("/ws/chat/extra/"))
    await dispatch(router, websocket_scope("/ws/chat/"))

    assert leaf.scope["path_remaining"] == ""


async def test_url_router_regex_endpoint_without_dollar_matches_a_prefix() -> None:
    leaf = Recorder()
    router = URLRouter([regex_route(r"^ws/chat/", leaf)])

    await dispatch(router, websocket_scope("/ws/chat/extra/"))

    # Django searches such an expression, as Channels does: the rest is left over.
    assert leaf.scope["path_remaining"] == "extra/"


async def test_url_router_unanchored_regex_matches_anywhere_in_the_path() -> None:
    leaf = Recorder()
    router = URLRouter([regex_route(r"chat/(?P<room>\w+)/", leaf)])

    await dispatch(router, websocket_scope("/ws/v2/chat/lobby/"))

    assert leaf.scope["url_route"]["kwargs"] == {"room": "lobby"}


# Nesting


async def test_nested_url_router_consumes_the_prefix_and_accumulates_captures() -> None:
    leaf = Recorder()
    router = URLRouter(
        [
            route(
                "ws/<str:tenant>/",
                URLRouter(
                    [
                        regex_route(
                            r"^v(\d)/",
                            URLRouter([route("rooms/<int:room>/", leaf, {"live": True})]),
                        )
                    ]
                ),
            )
        ]
    )

    await dispatch(router, websocket_scope("/ws/acme/v2/rooms/9/"))

    assert leaf.scope["url_route"] == {
        "args": ("2",),
        "kwargs": {"tenant": "acme", "room": 9, "live": True},
    }
    assert leaf.scope["path_remaining"] == ""


async def test_nested_url_router_captures_override_outer_captures_of_the_same_name() -> None:
    leaf = Recorder()
    router = URLRouter([route("ws/<str:room>/", URLRouter([route("<int:room>/", leaf)]), {"x": 1})])

    await dispatch(router, websocket_scope("/ws/outer/5/"))

    assert leaf.scope["url_route"]["kwargs"] == {"room": 5, "x": 1}


async def test_nested_url_router_that_does_not_match_falls_through_to_the_next_route() -> None:
    inner_leaf, beta = Recorder("inner"), Recorder("beta")
    router = URLRouter(
        [
            route("ws/", URLRouter([route("alpha/", inner_leaf)])),
            route("ws/beta/", beta),
        ]
    )

    await dispatch(router, websocket_scope("/ws/beta/"))

    assert inner_leaf.calls == []
    assert beta.scope["url_route"] == {"args": (), "kwargs": {}}


async def test_nested_url_router_strips_leading_slashes_of_the_rest() -> None:
    leaf = Recorder()
    router = URLRouter([route("ws", URLRouter([route("chat/", leaf)]))])

    await dispatch(router, websocket_scope("/ws/chat/"))

    assert leaf.scope["path_remaining"] == ""


async def test_url_router_called_inside_another_router_uses_path_remaining_and_url_route() -> None:
    leaf = Recorder()
    inner = URLRouter([route("<int:room>/", leaf)])
    scope = websocket_scope(
        "/ws/acme/5/",
        root_path="/ignored",
        path_remaining="5/",
        url_route={"args": ("a",), "kwargs": {"tenant": "acme"}},
    )

    await dispatch(inner, scope)

    assert leaf.scope["url_route"] == {"args": ("a",), "kwargs": {"tenant": "acme", "room": 5}}


async def test_channels_url_router_falls_through_past_our_router_that_does_not_match() -> None:
    ours_leaf, theirs_leaf = Recorder("ours"), Recorder("theirs")
    router = channels.routing.URLRouter(
        [
            route("ws/", URLRouter([route("alpha/", ours_leaf)])),
            route("ws/beta/<int:n>/", theirs_leaf),
        ]
    )

    await dispatch(router, websocket_scope("/ws/beta/3/"))
    await dispatch(router, websocket_scope("/ws/alpha/"))

    assert theirs_leaf.scope["url_route"]["kwargs"] == {"n": 3}
    assert ours_leaf.scope["path_remaining"] == ""


async def test_url_router_nests_a_channels_url_router() -> None:
    leaf = Recorder()
    router = URLRouter(
        [route("ws/<str:tenant>/", channels.routing.URLRouter([route("<int:room>/", leaf)]))]
    )

    await dispatch(router, websocket_scope("/ws/acme/4/"))

    assert leaf.scope["url_route"] == {"args": (), "kwargs": {"tenant": "acme", "room": 4}}


# root_path and slashes


async def test_url_router_strips_root_path() -> None:
    leaf = Recorder()
    router = URLRouter([route("ws/<int:room>/", leaf)])

    await dispatch(router, websocket_scope("/app/ws/3/", root_path="/app"))

    assert leaf.scope["url_route"]["kwargs"] == {"room": 3}
    assert leaf.scope["root_path"] == "/app"


async def test_url_router_rejects_a_path_outside_root_path() -> None:
    router = URLRouter([route("ws/<int:room>/", Recorder())])

    with pytest.raises(
        NoRouteFound,
        match=r"^No route for path '/ws/3/': it does not start with root_path '/app'\.$",
    ):
        await dispatch(router, websocket_scope("/ws/3/", root_path="/app"))


@pytest.mark.parametrize("path", ["/ws/chat/", "ws/chat/", "//ws/chat/"])
async def test_url_router_ignores_leading_slashes(path: str) -> None:
    leaf = Recorder()

    await dispatch(URLRouter([route("ws/chat/", leaf)]), websocket_scope(path))

    assert leaf.scope["path"] == path


# Errors


async def test_url_router_names_the_path_and_the_routes_it_tried() -> None:
    router = URLRouter([route("ws/chat/<str:room>/", Recorder()), route("ws/notify/", Recorder())])

    with pytest.raises(
        NoRouteFound,
        match=r"^No route for path '/ws/chatt/'; tried: 'ws/chat/<str:room>/', 'ws/notify/'\.$",
    ):
        await dispatch(router, websocket_scope("/ws/chatt/"))


async def test_url_router_lists_nested_routes_in_full_when_nothing_matches() -> None:
    router = URLRouter(
        [
            route("ws/chat/", URLRouter([route("<str:room>/", Recorder())])),
            regex_route(r"^ws/(?P<n>\d+)/$", Recorder()),
        ]
    )

    with pytest.raises(
        NoRouteFound,
        match=r"^No route for path '/app/ws/x/' \(remaining '/ws/x/'\); "
        r"tried: 'ws/chat/<str:room>/', '\^ws/\(\?P<n>\\\\d\+\)/\$'\.$",
    ):
        await dispatch(router, websocket_scope("/app/ws/x/", root_path="/app"))


async def test_url_router_shortens_a_long_list_of_tried_routes() -> None:
    router = URLRouter([route(f"ws/{n}/", Recorder()) for n in range(25)])

    with pytest.raises(NoRouteFound, match=r"'ws/19/' and 5 more\.$"):
        await dispatch(router, websocket_scope("/nope/"))


async def test_empty_url_router_finds_no_route() -> None:
    with pytest.raises(NoRouteFound, match=r"^No route for path '/ws/'; tried: \(none\)\.$"):
        await dispatch(URLRouter([]), websocket_scope("/ws/"))


async def test_no_route_found_is_resolver404_and_value_error() -> None:
    with pytest.raises(NoRouteFound) as caught:
        await dispatch(URLRouter([route("ws/", Recorder())]), websocket_scope("/x/"))

    assert isinstance(caught.value, Resolver404)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, RoutingError)


@pytest.mark.parametrize(
    ("scope", "shown"),
    [
        pytest.param({"type": "channel", "channel": "email"}, "None in a 'channel'", id="missing"),
        pytest.param(
            {"type": "websocket", "path": b"/ws/"}, "b'/ws/' in a 'websocket'", id="bytes"
        ),
    ],
)
async def test_url_router_rejects_scope_without_str_path(scope: dict[str, Any], shown: str) -> None:
    with pytest.raises(
        MissingScopeKey,
        match=rf"^URLRouter needs a str 'path' in the scope, got {shown} scope; "
        r"route only http and websocket scopes by URL\.$",
    ):
        await dispatch(URLRouter([route("ws/", Recorder())]), scope)


@pytest.mark.parametrize(
    ("routes", "error", "message"),
    [
        pytest.param(
            [route("ws/", Recorder()), "ws/chat/"],
            InvalidRoute,
            r"^URLRouter route 1 is 'ws/chat/'; expected a django\.urls path\(\) or re_path\(\) "
            r"route, e\.g\. path\('ws/chat/<str:room>/', ChatConsumer\.as_asgi\(\)\)\.$",
            id="string",
        ),
        pytest.param(
            [Recorder()],
            InvalidRoute,
            r"^URLRouter route 0 is Recorder\('app'\); expected a django\.urls path\(\)",
            id="application",
        ),
        pytest.param(
            [include([route("chat/", Recorder())])],
            InvalidRoute,
            r"^URLRouter route 0 is \(\[<URLPattern 'chat/'>\], None, None\); expected",
            id="include-tuple",
        ),
        pytest.param(
            [URLPattern(LocalePrefixPattern(), Recorder())],
            InvalidRoute,
            r"^URLRouter route 0 has a LocalePrefixPattern; only path\(\) and re_path\(\) "
            r"patterns are supported\.$",
            id="locale-prefix",
        ),
        pytest.param(
            [route("ws/chat/", RoomConsumer)],
            InvalidApplication,
            r"^URLRouter route 'ws/chat/' is the consumer class RoomConsumer; "
            r"pass RoomConsumer\.as_asgi\(\) instead\.$",
            id="consumer-class",
        ),
        pytest.param(
            [URLPattern(RegexPattern(r"^ws/$", is_endpoint=True), NOT_AN_APPLICATION)],
            InvalidApplication,
            r"^URLRouter route '\^ws/\$' is 'chat\.consumers\.Room', which is not an ASGI "
            r"application",
            id="not-callable",
        ),
        pytest.param(
            route("ws/", Recorder()),
            InvalidRoute,
            r"^URLRouter expects a list of path\(\)/re_path\(\) routes, got <URLPattern 'ws/'>\.$",
            id="single-route",
        ),
        pytest.param(
            "ws/",
            InvalidRoute,
            r"^URLRouter expects a list of path\(\)/re_path\(\) routes, got 'ws/'\.$",
            id="str",
        ),
        pytest.param(
            {"ws/": Recorder()},
            InvalidRoute,
            r"^URLRouter expects a list of path\(\)/re_path\(\) routes, got \{",
            id="dict",
        ),
        pytest.param(
            (pattern for pattern in [route("ws/", Recorder())]),
            InvalidRoute,
            r"^URLRouter expects a list of path\(\)/re_path\(\) routes, got <generator",
            id="generator",
        ),
    ],
)
def test_url_router_rejects_bad_routes_at_construction(
    routes: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        URLRouter(routes)

    assert isinstance(caught.value, RoutingError)
    assert isinstance(caught.value, TypeError)


def test_url_router_rejects_include_telling_to_nest_a_router() -> None:
    resolver = path("chat/", include([route("x/", Recorder())]))

    with pytest.raises(
        IncludeNotSupported,
        match=r"^URLRouter route 0 \(<URLResolver .*\) uses include\(\), which URLRouter does "
        r"not support; nest a URLRouter instead: path\('prefix/', URLRouter\(\[\.\.\.\]\)\)\.$",
    ) as caught:
        URLRouter([resolver])

    assert isinstance(caught.value, ImproperlyConfigured)
    assert isinstance(caught.value, ValueError)


def test_url_router_rejects_an_invalid_regular_expression_at_construction() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"is not a valid regular expression"):
        URLRouter([regex_route(r"^ws/(?P<room>[a-z/$", Recorder())])


def test_url_router_accepts_a_tuple_of_routes() -> None:
    routes = (route("ws/", Recorder()),)

    assert URLRouter(routes).routes == list(routes)


# The ASGI contract


async def test_url_router_passes_receive_and_send_unchanged() -> None:
    leaf = Recorder()

    await dispatch(URLRouter([route("ws/", leaf)]), websocket_scope("/ws/"))

    [(_, seen_receive, seen_send)] = leaf.calls
    assert seen_receive is receive
    assert seen_send is send


async def test_url_router_hands_on_a_new_scope_and_never_changes_the_callers() -> None:
    leaf = Recorder()
    router = URLRouter(
        [route("ws/<str:tenant>/", URLRouter([route("<int:room>/", leaf, {"x": [1]})]))]
    )
    scope = websocket_scope(
        "/app/ws/acme/5/",
        root_path="/app",
        headers=[(b"origin", b"http://testserver")],
        url_route={"args": ("outer",), "kwargs": {"from": "outside"}},
        state={"shared": True},
    )
    before = copy.deepcopy(scope)

    await dispatch(router, scope)

    assert scope == before
    assert leaf.scope is not scope
    assert leaf.scope["url_route"] == {
        "args": ("outer",),
        "kwargs": {"from": "outside", "tenant": "acme", "room": 5, "x": [1]},
    }
    assert {key: leaf.scope[key] for key in before if key != "url_route"} == {
        key: value for key, value in before.items() if key != "url_route"
    }


def test_url_router_does_not_change_the_users_route_objects() -> None:
    inner = URLRouter([route("<int:room>/", Recorder())])
    nested = route("ws/chat/", inner)
    leaf = regex_route(r"^ws/notify/$", Recorder())
    patterns = (nested.pattern, leaf.pattern)

    URLRouter([nested, leaf])

    assert (nested.pattern, leaf.pattern) == patterns
    assert getattr(nested.pattern, "_is_endpoint") is True  # noqa: B009
    assert getattr(leaf.pattern, "_is_endpoint") is True  # noqa: B009


async def test_url_router_routes_can_be_shared_with_channels_router_afterwards() -> None:
    leaf = Recorder()
    routes = [route("ws/", URLRouter([route("<int:room>/", leaf)]))]

    await dispatch(URLRouter(routes), websocket_scope("/ws/1/"))
    await dispatch(channels.routing.URLRouter(routes), websocket_scope("/ws/2/"))

    assert [scope["url_route"]["kwargs"] for scope, _, _ in leaf.calls] == [
        {"room": 1},
        {"room": 2},
    ]


def test_url_router_resolve_returns_the_application_and_captures() -> None:
    leaf = Recorder()
    router = URLRouter([route("ws/<int:room>/", leaf)])

    assert router.resolve("/ws/5/") == (leaf, "", (), {"room": 5})
    assert router.resolve("/ws/five/") is None


async def test_url_router_runs_an_unmodified_websocket_consumer() -> None:
    application = URLRouter(
        [route("ws/chat/", URLRouter([route("<str:room>/", RoomConsumer.as_asgi())]))]
    )
    client = WebsocketClient(application, "/ws/chat/lobby/")

    connected, _ = await client.connect()
    greeting = await client.receive_from()
    await client.disconnect()

    assert connected
    assert greeting == "lobby:''"
