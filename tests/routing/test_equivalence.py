"""Property test: our URLRouter routes every path as Channels' URLRouter does.

Same table, same path: the same application, the same ``url_route`` args and kwargs and the same
``path_remaining``; where Channels finds no route, ours raises NoRouteFound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from django.urls import URLPattern, register_converter
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.types import ASGIApp
from tests.routing.asgi_fakes import outcomes, regex_route, route

Leaf = Callable[[str], ASGIApp]
Router = Callable[[list[URLPattern]], ASGIApp]


class EvenNumberConverter:
    """A custom converter whose to_python rejects some values its expression matches."""

    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number % 2:
            raise ValueError(f"{number} is odd")
        return number

    def to_url(self, value: int) -> str:
        return str(value)


# Once per process: newer Django refuses to register a converter name twice.
register_converter(EvenNumberConverter, "routing_equivalence_even")


def spec_table(leaf: Leaf, router: Router) -> list[URLPattern]:
    """Flat and nested routes with every built-in converter, a custom one and regex groups."""
    chat = router(
        [
            route("<int:room>/", leaf("chat-int")),
            route("<slug:room>/", leaf("chat-slug")),
            regex_route(r"^(?P<room>[a-z]+)/history/$", leaf("chat-history")),
        ]
    )
    users = router(
        [
            route("profile/", leaf("profile")),
            route("<routing_equivalence_even:page>/", leaf("even-page")),
            route("<str:section>/", leaf("section")),
        ]
    )
    api = router(
        [
            route(
                "v1/",
                router(
                    [
                        route("<uuid:item>/", leaf("api-item")),
                        regex_route(r"^(\d+)/(\d+)/$", leaf("api-pair")),
                    ]
                ),
            ),
            route("<slug:version>/<int:n>/", leaf("api-version")),
        ]
    )
    return [
        route("ws/notify/", leaf("notify")),
        route("ws/chat/", chat),
        route("ws/users/<int:user>/", users),
        route("ws/files/<path:file>", leaf("files")),
        route("ws/items/<uuid:item>/", leaf("item")),
        route("ws/even/<routing_equivalence_even:n>/", leaf("even")),
        regex_route(r"^ws/(\d+)/(\d+)/$", leaf("pair")),
        regex_route(r"^ws/(?P<a>\d+)/(x)/$", leaf("named-and-unnamed")),
        route("ws/kw/<int:n>/", leaf("kw"), {"n": 0, "extra": True}),
        route("api", api),
        regex_route(r"^ws/(?P<section>[a-z]+)/", router([route("<int:n>/", leaf("regex-nested"))])),
        route("ws/<str:anything>/", leaf("anything")),
        regex_route(r"chat/$", leaf("unanchored")),
        route("<slug:a>/<slug:b>/", router([route("<int:c>/", leaf("slugs-int"))])),
    ]


# Numbers (some odd, some negative), words, slugs and UUIDs in several spellings, equally likely.
_SEGMENT = st.one_of(
    st.sampled_from(["42", "7", "8", "-3", "0", "2024"]),
    st.sampled_from(["ws", "chat", "users", "profile", "api", "v1", "history", "kw", "abc"]),
    st.sampled_from(["a-b", "a_b", "A", "é", "x y", "", "%41"]),
    st.sampled_from(
        [
            "6f1c1a1e-9d2b-4c1e-8f7a-0a1b2c3d4e5f",
            "6F1C1A1E-9D2B-4C1E-8F7A-0A1B2C3D4E5F",
            "6f1c1a1e9d2b4c1e8f7a0a1b2c3d4e5f",
        ]
    ),
)
# Templates near each route, filled with segments that fit some converters and not others.
_TEMPLATES = st.sampled_from(
    [
        "ws/notify/",
        "ws/chat/{}/",
        "ws/chat/{}/history/",
        "ws/chat/{}/{}/",
        "ws/users/{}/{}/",
        "ws/users/{}/profile/",
        "ws/files/{}/{}",
        "ws/items/{}/",
        "ws/even/{}/",
        "ws/{}/{}/",
        "ws/{}/",
        "ws/kw/{}/",
        "api/v1/{}/",
        "api/v1/{}/{}/",
        "api/{}/{}/",
        "api{}/v1/{}/",
        "{}/{}/{}/",
        "{}/chat/",
        "chat/",
    ]
)


@st.composite
def _near_paths(draw: st.DrawFn) -> str:
    template = draw(_TEMPLATES)
    segments = [draw(_SEGMENT) for _ in range(template.count("{}"))]
    leading = draw(st.sampled_from(["/", "/", "", "//"]))
    trailing = draw(st.sampled_from(["", "", "", "", "", "/", "x"]))
    return leading + template.format(*segments) + trailing


_PATHS = st.one_of(
    _near_paths(),
    _near_paths(),
    _near_paths(),
    st.tuples(
        st.sampled_from(["/", "", "//"]),
        st.lists(_SEGMENT, max_size=6).map("/".join),
        st.sampled_from(["/", ""]),
    ).map("".join),
    st.text(alphabet="/wsachtv1234-_aé", max_size=24),
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(paths=st.lists(_PATHS, min_size=1, max_size=5))
def test_url_router_routes_like_channels(paths: list[str]) -> None:
    for path in paths:
        theirs, ours = asyncio.run(outcomes(spec_table, path))
        assert ours == theirs, path


def test_the_equivalence_table_reaches_every_route() -> None:
    paths = {
        "/ws/notify/": "notify",
        "/ws/chat/42/": "chat-int",
        "/ws/chat/a-b/": "chat-slug",
        "/ws/chat/abc/history/": "chat-history",
        "/ws/users/7/profile/": "profile",
        "/ws/users/7/8/": "even-page",
        "/ws/users/7/7/": "section",
        "/ws/files/a/b.txt": "files",
        "/ws/items/6f1c1a1e-9d2b-4c1e-8f7a-0a1b2c3d4e5f/": "item",
        "/ws/even/8/": "even",
        "/ws/1/2/": "pair",
        "/ws/1/x/": "named-and-unnamed",
        "/ws/kw/5/": "kw",
        "/api/v1/6f1c1a1e-9d2b-4c1e-8f7a-0a1b2c3d4e5f/": "api-item",
        "/api/v1/1/2/": "api-pair",
        "/api/v2/3/": "api-version",
        "/ws/abc/4/": "regex-nested",
        "/ws/abc/": "anything",
        "/chat/": "unanchored",
        "/a/b/1/": "slugs-int",
    }
    for path, name in paths.items():
        theirs, ours = asyncio.run(outcomes(spec_table, path))
        assert ours == theirs, path
        assert ours is not None, path
        assert ours[0] == name, path
