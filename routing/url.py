"""``URLRouter``: route http and websocket scopes by path with Django ``path()``/``re_path()``."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.urls import URLPattern, URLResolver
from django.urls.converters import IntConverter, StringConverter
from django.urls.resolvers import RegexPattern, RoutePattern

from routing._nesting import unwrap
from routing._validate import check_application
from routing.exceptions import (
    IncludeNotSupported,
    InvalidRoute,
    MissingScopeKey,
    NoRouteFound,
)
from routing.types import ASGIApp, Receive, Scope, Send

_REGEX_LITERAL = re.compile(r"[^.^$*+?{}\[\]\\|()]*")
_MAX_ROUTES_IN_ERROR = 20


# A compiled route test: path → (path_remaining, args, kwargs), or None when it does not match.
_Matcher = Callable[[str], tuple[str, tuple[Any, ...], dict[str, Any]] | None]


@dataclass(frozen=True, slots=True)
class _Route:
    pattern: RoutePattern | RegexPattern
    match: _Matcher
    application: ASGIApp
    default_kwargs: dict[str, Any]
    # Text every matching path starts with: a cheap test before the regular expression.
    literal: str
    # Our router, called directly in place of this route: its routes are flattened into ours.
    nested: URLRouter | None = None
    # Our router behind middleware: asked first whether it matches, so a miss falls through.
    wrapped: URLRouter | None = None
    description: str = field(default="")
    # The literal when the segment index cannot vouch for all of it (it ends inside a segment),
    # else "": the index offers a route only to paths that start with its complete segments.
    unindexed_literal: str = ""
    # A leaf route without default kwargs: its match is the result as it is.
    plain: bool = False


_Routes = tuple[_Route, ...]
# What a route resolves to: application, path_remaining, args, kwargs.
_Match = tuple[ASGIApp, str, tuple[Any, ...], dict[str, Any]]


class _SegmentIndex:
    """Candidate routes by leading path segments, so a lookup skips routes that cannot match.

    A route whose fixed prefix spans the segments ``a/b/`` is filed under the prefix ``a/b/``.
    The candidates for a path are the routes filed under its longest known segment prefix or any
    shorter one, plus those without a fixed first segment, in table order: the first route that
    matches still wins, as in Channels. One regular expression finds that longest prefix.
    """

    __slots__ = ("by_prefix", "match")

    def __init__(self, table: _Routes) -> None:
        keyed = [(route, _fixed_segments(route.literal)) for route in table]
        # The empty prefix is there even without routes, so that every lookup finds a key.
        prefixes = {()} | {key[:depth] for _, key in keyed for depth in range(len(key) + 1)}
        self.by_prefix = {
            "".join(f"{segment}/" for segment in prefix): tuple(
                route for route, key in keyed if prefix[: len(key)] == key
            )
            for prefix in prefixes
        }
        self.match = re.compile(_prefix_expression(prefixes, ())).match

    def lookup(self, path: str) -> _Routes:
        # Every part of the expression is optional, so it always matches.
        return self.by_prefix[self.match(path).group()]  # type: ignore[union-attr]


def _prefix_expression(prefixes: set[tuple[str, ...]], node: tuple[str, ...]) -> str:
    """An expression matching the longest path of known segments below ``node``.

    Segments end at ``/``, so at most one alternative can match at each level.
    """
    depth = len(node)
    below = {
        f"{prefix[-1]}/": _prefix_expression(prefixes, prefix)
        for prefix in prefixes
        if len(prefix) == depth + 1 and prefix[:depth] == node
    }
    return f"(?:{_alternation(below)})?" if below else ""


def _alternation(branches: dict[str, str]) -> str:
    """``text1 tail1|text2 tail2|...`` with texts sharing a first character merged.

    The regular expression engine tries alternatives one by one; merging them into a tree of
    characters keeps a lookup from walking every segment name of a wide table. No text is a
    prefix of another, since each ends with the only ``/`` it contains.
    """
    by_first: dict[str, dict[str, str]] = {}
    for text, tail in branches.items():
        by_first.setdefault(text[0], {})[text[1:]] = tail
    alternatives = []
    for first, rests in sorted(by_first.items()):
        if len(rests) == 1:
            [(rest, tail)] = rests.items()
            alternatives.append(re.escape(first + rest) + tail)
            continue
        shared = os.path.commonprefix(list(rests))  # noqa: RUF071 (characters, not paths)
        below = {rest[len(shared) :]: tail for rest, tail in rests.items()}
        alternatives.append(f"{re.escape(first + shared)}(?:{_alternation(below)})")
    return "|".join(alternatives)


def _fixed_segments(literal: str) -> tuple[str, ...]:
    """The complete path segments at the start of a route's fixed prefix."""
    return tuple(literal.split("/")[:-1])


def _literal_prefix(pattern: RoutePattern | RegexPattern) -> str | None:
    """The fixed text a matching path must start with, or None when unknown."""
    if isinstance(pattern, RoutePattern):
        return str(pattern).partition("<")[0]
    regex = str(pattern)
    # With an alternation the text before the first "|" need not be there: r"^a/$|^b/$".
    if not regex.startswith("^") or "|" in regex:
        return None
    literal = _REGEX_LITERAL.match(regex, 1)
    assert literal is not None  # the expression also matches the empty string
    end = literal.end()
    # A quantifier applies to the character before it, which is then not fixed text.
    if end < len(regex) and regex[end] in "*?{":
        end -= 1
    return regex[1:end]


def _prefix_copy(pattern: RoutePattern | RegexPattern) -> RoutePattern | RegexPattern:
    """A non-endpoint copy of ``pattern``, so a nested router sees the rest of the path.

    Channels rewrites the user's route in place; a copy leaves their object untouched.
    """
    if isinstance(pattern, RoutePattern):
        return RoutePattern(str(pattern), pattern.name, is_endpoint=False)
    return RegexPattern(str(pattern), pattern.name, is_endpoint=False)


def _route_matcher(pattern: RoutePattern) -> _Matcher:
    """Django's ``RoutePattern.match``, with the expression looked up once.

    Django resolves ``pattern.regex`` through a per-language descriptor on every call, which
    costs more than the match itself; URLRouter routes are not translated, so it is fixed here.
    """
    regex = pattern.regex
    converters = pattern.converters
    route = str(pattern)
    is_endpoint: bool = getattr(pattern, "_is_endpoint")  # noqa: B009 (untyped private attribute)
    if not converters:
        if is_endpoint:
            return lambda path: ("", (), {}) if path == route else None
        return lambda path: (path[len(route) :], (), {}) if path.startswith(route) else None

    conversions = tuple(
        (key, function)
        for key, converter in converters.items()
        if (function := _to_python(converter)) is not None
    )

    # Django's route expressions start with "^", so search() is match().
    find = regex.match

    def match(path: str) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
        found = find(path)
        if found is None:
            return None
        kwargs = found.groupdict()
        try:
            for key, to_python in conversions:
                kwargs[key] = to_python(kwargs[key])
        except ValueError:
            return None
        # An endpoint's expression ends with \Z: nothing remains, and nothing to slice.
        return "" if is_endpoint else path[found.end() :], (), kwargs

    return match


def _to_python(converter: object) -> Callable[[str], Any] | None:
    """The converter's ``to_python``, ``int`` for Django's own int, None for the identity."""
    method = getattr(type(converter), "to_python", None)
    if method is StringConverter.to_python:
        return None
    if method is IntConverter.to_python:
        return int
    to_python: Callable[[str], Any] = getattr(converter, "to_python")  # noqa: B009
    return to_python


def _regex_matcher(pattern: RegexPattern) -> _Matcher:
    """Django's ``RegexPattern.match``, with the expression looked up once."""
    regex = pattern.regex
    whole = getattr(pattern, "_is_endpoint") and regex.pattern.endswith("$")  # noqa: B009
    find = regex.fullmatch if whole else regex.search

    def match(path: str) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
        found = find(path)
        if found is None:
            return None
        # Named groups win and unnamed ones are then dropped, as in Django.
        kwargs = found.groupdict()
        args = () if kwargs else found.groups()
        return path[found.end() :], args, {k: v for k, v in kwargs.items() if v is not None}

    return match


def _build_route(index: int, route: object) -> _Route:
    if isinstance(route, URLResolver):
        raise IncludeNotSupported(
            f"URLRouter route {index} ({route!r}) uses include(), which URLRouter does not "
            "support; nest a URLRouter instead: path('prefix/', URLRouter([...]))."
        )
    if not isinstance(route, URLPattern):
        raise InvalidRoute(
            f"URLRouter route {index} is {route!r}; expected a django.urls path() or re_path() "
            "route, e.g. path('ws/chat/<str:room>/', ChatConsumer.as_asgi())."
        )
    pattern = route.pattern
    if not isinstance(pattern, RoutePattern | RegexPattern):
        raise InvalidRoute(
            f"URLRouter route {index} has a {type(pattern).__name__}; only path() and "
            "re_path() patterns are supported."
        )
    application = check_application(route.callback, f"URLRouter route {str(pattern)!r}")
    routes_further, router = unwrap(application)
    if routes_further:
        pattern = _prefix_copy(pattern)
    direct = router if router is application else None
    matcher = (
        _route_matcher(pattern) if isinstance(pattern, RoutePattern) else _regex_matcher(pattern)
    )
    default_kwargs = dict(route.default_args)
    literal = _literal_prefix(pattern) or ""
    nested = direct if isinstance(direct, URLRouter) else None
    wrapped = router if isinstance(router, URLRouter) and direct is None else None
    return _Route(
        pattern=pattern,
        match=matcher,
        application=application,
        default_kwargs=default_kwargs,
        literal=literal,
        nested=nested,
        wrapped=wrapped,
        description=str(pattern),
        unindexed_literal="" if literal.endswith("/") or not literal else literal,
        plain=not default_kwargs and nested is None and wrapped is None,
    )


class URLRouter:
    """Route by ``scope["path"]`` to the first matching ``path()`` or ``re_path()`` route.

    Captured values land in ``scope["url_route"] = {"args": (...), "kwargs": {...}}``, converted
    by the route's converters. A nested ``URLRouter`` consumes the matched prefix and adds its own
    captures, also when it sits behind middleware::

        URLRouter([
            path("ws/chat/", AuthMiddlewareStack(URLRouter([
                path("<str:room>/", ChatConsumer.as_asgi()),
            ]))),
            re_path(r"^ws/notify/$", NotifyConsumer.as_asgi()),
        ])
    """

    #: Channels' marker: routes to this application are prefixes, not endpoints.
    _path_routing = True

    def __init__(self, routes: Sequence[URLPattern | URLResolver]) -> None:
        if isinstance(routes, str | bytes) or not isinstance(routes, Sequence):
            raise InvalidRoute(
                f"URLRouter expects a list of path()/re_path() routes, got {routes!r}."
            )
        self.routes = list(routes)
        self._table = tuple(_build_route(index, route) for index, route in enumerate(routes))
        self._index = _SegmentIndex(self._table)

    def resolve(self, path: str) -> _Match | None:
        """The application and captures for ``path`` (already stripped of ``root_path``)."""
        path = path.lstrip("/")
        index = self._index
        # _SegmentIndex.lookup, inlined: this runs on every connection.
        for route in index.by_prefix[index.match(path).group()]:  # type: ignore[union-attr]
            if route.unindexed_literal and not path.startswith(route.unindexed_literal):
                continue
            matched = route.match(path)
            if matched is None:
                continue
            remaining, args, kwargs = matched
            if route.plain:
                return route.application, remaining, args, kwargs
            if route.default_kwargs:
                kwargs.update(route.default_kwargs)
            if route.nested is not None:
                inner = route.nested.resolve(remaining)
                if inner is None:
                    continue
                application, remaining, inner_args, inner_kwargs = inner
                # kwargs is this call's own dict: the matcher made it.
                kwargs.update(inner_kwargs)
                return application, remaining, args + inner_args, kwargs
            if route.wrapped is not None and route.wrapped.resolve(remaining) is None:
                continue
            return route.application, remaining, args, kwargs
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        path = scope.get("path_remaining")
        if path is None:
            path = scope.get("path")
            if not isinstance(path, str) or scope.get("root_path"):
                path = self._outermost_path(scope)
        matched = self.resolve(path)
        if matched is None:
            raise self._no_route(scope, path)
        application, remaining, args, kwargs = matched
        outer = scope.get("url_route")
        if outer:
            args = tuple(outer.get("args", ())) + args
            kwargs = {**outer.get("kwargs", {}), **kwargs}
        return await application(
            {
                **scope,
                "path_remaining": remaining,
                "url_route": {"args": args, "kwargs": kwargs},
            },
            receive,
            send,
        )

    def _outermost_path(self, scope: Scope) -> str:
        path = scope.get("path")
        if not isinstance(path, str):
            raise MissingScopeKey(
                f"URLRouter needs a str 'path' in the scope, got {path!r} in a "
                f"{scope.get('type')!r} scope; route only http and websocket scopes by URL."
            )
        root_path = scope.get("root_path") or ""
        if not path.startswith(root_path):
            raise NoRouteFound(
                f"No route for path {path!r}: it does not start with root_path {root_path!r}."
            )
        return path[len(root_path) :]

    def descriptions(self) -> list[str]:
        """Every full route this router can reach, nested prefixes joined, for messages."""
        found: list[str] = []
        for route in self._table:
            inner = route.nested or route.wrapped
            if inner is None:
                found.append(route.description)
            else:
                found.extend(route.description + rest for rest in inner.descriptions())
        return found

    def _no_route(self, scope: Scope, path: str) -> NoRouteFound:
        routes = self.descriptions()
        tried = ", ".join(repr(route) for route in routes[:_MAX_ROUTES_IN_ERROR])
        if len(routes) > _MAX_ROUTES_IN_ERROR:
            tried += f" and {len(routes) - _MAX_ROUTES_IN_ERROR} more"
        shown = scope.get("path", path)
        where = "" if shown == path else f" (remaining {path!r})"
        return NoRouteFound(f"No route for path {shown!r}{where}; tried: {tried or '(none)'}.")
