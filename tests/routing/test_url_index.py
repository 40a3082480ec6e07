"""URLRouter's segment index: it narrows the candidate routes, never the first match.

Every table here is also routed by Channels' URLRouter, which tries each route in order: the
index must never change which route wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from django.urls import URLPattern
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from routing import URLRouter
from routing.types import ASGIApp
from tests.routing.asgi_fakes import TableBuilder, outcomes, regex_route, route

Leaf = Callable[[str], ASGIApp]
Router = Callable[[list[URLPattern]], ASGIApp]


def first_match_wins(leaf: Leaf, router: Router) -> list[URLPattern]:
    return [
        route("<str:x>/chat/", leaf("any-then-chat")),
        route("ws/chat/", leaf("ws-chat")),
        route("ws/<str:y>/", leaf("ws-any")),
        regex_route(r"^ws/chat/$", leaf("ws-chat-regex")),
        route("ws/lobby/", leaf("ws-lobby")),
    ]


def interleaved(leaf: Leaf, router: Router) -> list[URLPattern]:
    return [
        route("ws/a/", leaf("ws-a")),
        route("<str:x>/b/", leaf("any-b")),
        route("ws/b/", leaf("ws-b")),
        regex_route(r"c/$", leaf("unanchored-c")),
        regex_route(r"d/", leaf("unanchored-d")),
        route("ws/c/", leaf("ws-c")),
        route("ws/d/", leaf("ws-d")),
        route("ws/<int:n>/", leaf("ws-int")),
        route("ws/", router([route("e/", leaf("nested-e"))])),
        route("<slug:s>/e/", leaf("slug-e")),
        route("ws/e/", leaf("ws-e")),
        route("ws/f/", leaf("ws-f")),
    ]


def anchors(leaf: Leaf, router: Router) -> list[URLPattern]:
    return [
        regex_route(r"chat/$", leaf("chat-dollar")),
        regex_route(r"^ws/chat/$", leaf("ws-chat")),
        regex_route(r"room/", leaf("room-anywhere")),
        regex_route(r"^ws/room/$", leaf("ws-room")),
        regex_route(r"^api/(?P<v>v\d)/", router([route("items/", leaf("api-items"))])),
        regex_route(r"^(?P<lang>[a-z]{2})/home/$", leaf("lang-home")),
        regex_route(r"^$", leaf("root")),
    ]


def quantifiers(leaf: Leaf, router: Router) -> list[URLPattern]:
    return [
        regex_route(r"^ab?c/$", leaf("ab?c")),
        regex_route(r"^xy*z/$", leaf("xy*z")),
        regex_route(r"^pq{0,2}r/$", leaf("pq{0,2}r")),
        regex_route(r"^mn+o/$", leaf("mn+o")),
        regex_route(r"^ws/chat/?$", leaf("ws/chat/?")),
        regex_route(r"^ws/x/*y/$", leaf("ws/x/*y")),
        regex_route(r"^st??u/$", leaf("st??u")),
        route("ac/", leaf("ac")),
        route("xz/", leaf("xz")),
        route("pr/", leaf("pr")),
        route("ws/chat", leaf("ws/chat")),
        route("ws/xy/", leaf("ws/xy")),
        route("su/", leaf("su")),
    ]


def alternations(leaf: Leaf, router: Router) -> list[URLPattern]:
    return [
        regex_route(r"^ws/chat/$|^ws/room/$", leaf("chat|room")),
        regex_route(r"^ws/(a|b)/$|^c/$", leaf("(a|b)|c")),
        regex_route(r"^(?:ws|api)/x/$", leaf("(ws|api)/x")),
        regex_route(r"^ws/(?P<kind>news|blog)/$", leaf("news|blog")),
        route("ws/room/", leaf("ws-room")),
        route("c/", leaf("c")),
        route("api/x/", leaf("api-x")),
        route("ws/news/", leaf("ws-news")),
    ]


def no_slash_prefixes(leaf: Leaf, router: Router) -> list[URLPattern]:
    return [
        route("ws", leaf("ws")),
        route("ws/", leaf("ws/")),
        route("wsx/", leaf("wsx/")),
        route("api", router([route("chat/", leaf("api+chat")), route("/v1/", leaf("api+v1"))])),
        route("ws/cha<str:rest>/", leaf("ws/cha*")),
        route("ws/chat/", leaf("ws/chat/")),
        route("<str:x>", leaf("any-segment")),
    ]


def deep(leaf: Leaf, router: Router) -> list[URLPattern]:
    return [
        route("a/b/c/d/", leaf("abcd")),
        route("a/b/<str:x>/e/", leaf("ab*e")),
        route("a/<str:x>/c/e/", leaf("a*ce")),
        route("a/b/c/e/", leaf("abce")),
        route("a/b/", router([route("c/f/", leaf("nested-abcf"))])),
        route("a/b/c/", router([route("f/", leaf("nested-abc-f")), route("g/", leaf("abcg"))])),
        route("a/", leaf("a-prefix-endpoint")),
    ]


def special_characters(leaf: Leaf, router: Router) -> list[URLPattern]:
    return [
        route("a+b/", leaf("a+b")),
        route("a.b/", leaf("a.b")),
        route("(x)/", leaf("(x)")),
        route("[y]/", leaf("[y]")),
        route("a*/", leaf("a*")),
        route("q?/", leaf("q?")),
        route("^caret/", leaf("^caret")),
        route("dollar$/", leaf("dollar$")),
        route("back\\slash/", leaf("backslash")),
        route("café/", leaf("café")),
        route("ws//x/", leaf("ws//x")),
        route("WS/", leaf("WS")),
        route("/lead/", leaf("/lead")),
        regex_route(r"^e\.f/$", leaf("e.f")),
        regex_route(r"^g\/h/$", leaf("g/h")),
        route("", leaf("empty")),
    ]


def wide(leaf: Leaf, router: Router) -> list[URLPattern]:
    names = ["r", "ro", "room", "rooms", "room1", "room10", "room100", "room2", "rob", "x"]
    routes = [route(f"ws/{name}/<int:n>/", leaf(f"ws/{name}")) for name in names]
    routes += [route(f"ws/room{n}/x/", leaf(f"room{n}/x")) for n in range(150)]
    routes += [route(f"ws/room{n}/", router([route("y/", leaf(f"room{n}/y"))])) for n in range(50)]
    routes.append(route("ws/<str:any>/<str:rest>/", leaf("fallback")))
    return routes


TABLES: dict[str, tuple[TableBuilder, list[tuple[str, str | None]]]] = {
    "first-match-wins": (
        first_match_wins,
        [
            ("/ws/chat/", "any-then-chat"),
            ("/ws/lobby/", "ws-any"),
            ("/x/chat/", "any-then-chat"),
            ("/ws/", None),
            ("/ws/a/b/", None),
        ],
    ),
    "interleaved": (
        interleaved,
        [
            ("/ws/a/", "ws-a"),
            ("/ws/b/", "any-b"),
            ("/ws/c/", "ws-c"),
            ("/c/", "unanchored-c"),
            ("/x/ws/c/", None),
            ("/ws/d/", "unanchored-d"),
            ("/ws/dd/", "unanchored-d"),
            ("/ws/7/", "ws-int"),
            ("/ws/e/", "nested-e"),
            ("/wx/e/", "slug-e"),
            ("/ws/f/", "ws-f"),
            ("/ws/g/", None),
        ],
    ),
    "anchors": (
        anchors,
        [
            ("/ws/chat/", "ws-chat"),
            ("/chat/", "chat-dollar"),
            ("/ws/room/", "room-anywhere"),
            ("/api/v2/items/", "api-items"),
            ("/api/v2/other/", None),
            ("/en/home/", "lang-home"),
            ("/", "root"),
            ("", "root"),
        ],
    ),
    "quantifiers": (
        quantifiers,
        [
            ("/ac/", "ab?c"),
            ("/abc/", "ab?c"),
            ("/xz/", "xy*z"),
            ("/xyyz/", "xy*z"),
            ("/pr/", "pq{0,2}r"),
            ("/pqqr/", "pq{0,2}r"),
            ("/mo/", None),
            ("/mnno/", "mn+o"),
            ("/ws/chat", "ws/chat/?"),
            ("/ws/chat/", "ws/chat/?"),
            ("/ws/xy/", "ws/x/*y"),
            ("/ws/x//y/", "ws/x/*y"),
            ("/su/", "st??u"),
        ],
    ),
    "alternations": (
        alternations,
        [
            ("/ws/room/", "chat|room"),
            ("/ws/chat/", "chat|room"),
            ("/c/", "(a|b)|c"),
            ("/ws/b/", "(a|b)|c"),
            ("/api/x/", "(ws|api)/x"),
            ("/ws/news/", "news|blog"),
        ],
    ),
    "no-slash-prefixes": (
        no_slash_prefixes,
        [
            ("/ws", "ws"),
            ("/ws/", "ws/"),
            ("/wsx/", "wsx/"),
            ("/api/chat/", "api+chat"),
            ("/apichat/", "api+chat"),
            # The inner route starts with "/", which never matches: leading slashes are dropped.
            ("/api/v1/", None),
            ("/ws/chat/", "ws/cha*"),
            ("/ws/cha/", None),
            ("/other", "any-segment"),
        ],
    ),
    "deep": (
        deep,
        [
            ("/a/b/c/d/", "abcd"),
            ("/a/b/c/e/", "ab*e"),
            ("/a/x/c/e/", "a*ce"),
            ("/a/b/c/f/", "nested-abcf"),
            ("/a/b/c/g/", "abcg"),
            ("/a/", "a-prefix-endpoint"),
            ("/a/b/", None),
        ],
    ),
    "special-characters": (
        special_characters,
        [
            ("/a+b/", "a+b"),
            ("/aab/", None),
            ("/a.b/", "a.b"),
            ("/axb/", None),
            ("/(x)/", "(x)"),
            ("/[y]/", "[y]"),
            ("/a*/", "a*"),
            ("/q?/", "q?"),
            ("/^caret/", "^caret"),
            ("/dollar$/", "dollar$"),
            ("/back\\slash/", "backslash"),
            ("/café/", "café"),
            ("/ws//x/", "ws//x"),
            ("/WS/", "WS"),
            ("/ws/", None),
            ("/lead/", None),
            ("/e.f/", "e.f"),
            ("/exf/", None),
            ("/g/h/", "g/h"),
            ("/", "empty"),
        ],
    ),
    "wide": (
        wide,
        [
            ("/ws/r/1/", "ws/r"),
            ("/ws/ro/1/", "ws/ro"),
            ("/ws/room/1/", "ws/room"),
            ("/ws/rooms/1/", "ws/rooms"),
            ("/ws/room1/1/", "ws/room1"),
            ("/ws/room10/1/", "ws/room10"),
            ("/ws/room100/1/", "ws/room100"),
            ("/ws/rob/1/", "ws/rob"),
            ("/ws/room1/x/", "room1/x"),
            ("/ws/room149/x/", "room149/x"),
            ("/ws/room49/y/", "room49/y"),
            ("/ws/room50/y/", "fallback"),
            ("/ws/room1000/x/", "fallback"),
            ("/ws/roo/x/", "fallback"),
        ],
    ),
}


@pytest.mark.parametrize(
    ("builder", "path", "expected"),
    [
        pytest.param(builder, path, expected, id=f"{name}:{path}")
        for name, (builder, cases) in TABLES.items()
        for path, expected in cases
    ],
)
async def test_url_router_index_keeps_the_first_matching_route(
    builder: TableBuilder, path: str, expected: str | None
) -> None:
    theirs, ours = await outcomes(builder, path)

    assert ours == theirs
    assert (ours[0] if ours else None) == expected


def test_url_router_ignores_case_insensitive_regex_flags_in_the_index() -> None:
    # A flag group makes the expression start with "(": the route has no fixed text, so the
    # index files it under every prefix.
    router = URLRouter([regex_route(r"(?i)^ws/chat/$", lambda *_: None)])

    assert router.resolve("WS/Chat/") is not None


# Random tables from a small alphabet, so segment names share prefixes and routes overlap.
_SEGMENTS = st.sampled_from(["a", "b", "ab", "ba", "aa", "a.b", "a+", "", "x1", "x10"])
_TAILS = st.sampled_from(["", "<int:n>/", "<str:s>/", "<path:p>", "<slug:g>/z/"])


@st.composite
def _tables(draw: st.DrawFn) -> list[tuple[str, str, bool]]:
    """(kind, pattern, nested) entries: kind is "path", "re_path" or "re_path^"."""
    entries = []
    for _ in range(draw(st.integers(1, 8))):
        prefix = "/".join(draw(st.lists(_SEGMENTS, min_size=0, max_size=3)))
        prefix = f"{prefix}/" if prefix and draw(st.booleans()) else prefix
        kind = draw(st.sampled_from(["path", "path", "re_path", "re_path^"]))
        if kind == "path":
            pattern = prefix + draw(_TAILS)
        else:
            anchor = "^" if kind == "re_path^" else ""
            pattern = anchor + prefix.replace(".", r"\.").replace("+", r"\+")
            pattern += draw(st.sampled_from(["", "$", r"(?P<n>\d+)/", "b?/", "a*$", "$|^x1/"]))
        entries.append((kind, pattern, draw(st.booleans()) and not pattern.endswith("$")))
    return entries


def _builder(entries: list[tuple[str, str, bool]]) -> TableBuilder:
    def build(leaf: Leaf, router: Router) -> list[URLPattern]:
        routes: list[URLPattern] = []
        for number, (kind, pattern, nested) in enumerate(entries):
            make = route if kind == "path" else regex_route
            application: Any = leaf(f"route{number}")
            if nested:
                application = router(
                    [
                        route("a/", leaf(f"route{number}/a")),
                        route("<int:m>/", leaf(f"route{number}/m")),
                    ]
                )
            routes.append(make(pattern, application))
        return routes

    return build


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    entries=_tables(),
    paths=st.lists(
        st.lists(_SEGMENTS | st.sampled_from(["1", "22", "z", "-"]), max_size=5).map("/".join),
        min_size=1,
        max_size=6,
    ),
    leading=st.sampled_from(["", "/", "//"]),
    trailing=st.sampled_from(["", "/"]),
)
# A fixed text before "|" is not required by the branch after it.
@example(entries=[("re_path^", "^a/b$|^x1/", False)], paths=["x1"], leading="/", trailing="/")
def test_url_router_index_agrees_with_channels_on_random_tables(
    entries: list[tuple[str, str, bool]], paths: list[str], leading: str, trailing: str
) -> None:
    builder = _builder(entries)
    for path in paths:
        full_path = leading + path + trailing
        theirs, ours = asyncio.run(outcomes(builder, full_path))
        assert ours == theirs, (entries, full_path)
