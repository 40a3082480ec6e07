"""The routing error tree: every error is a RoutingError and a ValueError, as in Channels."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls.exceptions import Resolver404

import routing
from routing import (
    IncludeNotSupported,
    InvalidApplication,
    InvalidRoute,
    MissingScopeKey,
    NoRouteFound,
    RoutingError,
    UnknownChannel,
    UnknownProtocol,
)
from routing.exceptions import quoted_list


@pytest.mark.parametrize(
    ("error", "also"),
    [
        (InvalidApplication, TypeError),
        (InvalidRoute, TypeError),
        (IncludeNotSupported, ImproperlyConfigured),
        (NoRouteFound, Resolver404),
        (UnknownProtocol, RoutingError),
        (UnknownChannel, RoutingError),
        (MissingScopeKey, KeyError),
    ],
)
def test_every_routing_error_is_a_value_error(
    error: type[Exception], also: type[Exception]
) -> None:
    assert issubclass(error, RoutingError)
    assert issubclass(error, ValueError)
    assert issubclass(error, also)


def test_routing_error_is_a_value_error() -> None:
    assert issubclass(RoutingError, ValueError)


def test_missing_scope_key_message_is_not_quoted_like_a_key_error() -> None:
    error = MissingScopeKey("URLRouter needs a str 'path' in the scope.")

    assert str(error) == "URLRouter needs a str 'path' in the scope."
    assert str(KeyError("x")) == "'x'"


def test_quoted_list_quotes_each_value_or_says_none() -> None:
    assert quoted_list(["email", "sms"]) == "'email', 'sms'"
    assert quoted_list([]) == "(none)"


def test_routing_exports_its_public_api() -> None:
    assert sorted(routing.__all__) == [
        "ChannelNameRouter",
        "IncludeNotSupported",
        "InvalidApplication",
        "InvalidRoute",
        "MissingScopeKey",
        "NoRouteFound",
        "ProtocolTypeRouter",
        "RoutingError",
        "URLRouter",
        "UnknownChannel",
        "UnknownProtocol",
        "mark_router",
    ]
    assert all(hasattr(routing, name) for name in routing.__all__)
