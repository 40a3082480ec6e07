"""Routing errors: each subclasses ``ValueError``, as Channels' routers raise ``ValueError``."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ImproperlyConfigured
from django.urls.exceptions import Resolver404


def quoted_list(values: Iterable[object]) -> str:
    """``'a', 'b'`` for error messages, or ``(none)`` when empty."""
    text = ", ".join(repr(value) for value in values)
    return text or "(none)"


class RoutingError(ValueError):
    """Base class of every routing error."""


class InvalidApplication(RoutingError, TypeError):
    """A router was given something that is not an ASGI application."""


class InvalidRoute(RoutingError, TypeError):
    """A ``URLRouter`` was given something that is not a ``path()``/``re_path()`` route."""


class IncludeNotSupported(RoutingError, ImproperlyConfigured):
    """``include()`` was used in a ``URLRouter``; nest a ``URLRouter`` instead."""


class NoRouteFound(RoutingError, Resolver404):
    """No route matched the scope's path.

    Also a ``Resolver404``, so a Channels ``URLRouter`` holding one of ours falls through to its
    next route exactly as it does for its own nested routers.
    """


class UnknownProtocol(RoutingError):
    """``ProtocolTypeRouter`` has no application for the scope's ``type``."""


class UnknownChannel(RoutingError):
    """``ChannelNameRouter`` has no application for the scope's ``channel``."""


class MissingScopeKey(RoutingError, KeyError):
    """The scope lacks the key a router dispatches on."""

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the whole message.
        return str(self.args[0])


__all__ = [
    "IncludeNotSupported",
    "InvalidApplication",
    "InvalidRoute",
    "MissingScopeKey",
    "NoRouteFound",
    "RoutingError",
    "UnknownChannel",
    "UnknownProtocol",
]
