"""Channels-compatible ASGI routers, typed and fast: protocol, URL and channel-name routing."""

from routing._nesting import mark_router
from routing.channel import ChannelNameRouter
from routing.exceptions import (
    IncludeNotSupported,
    InvalidApplication,
    InvalidRoute,
    MissingScopeKey,
    NoRouteFound,
    RoutingError,
    UnknownChannel,
    UnknownProtocol,
)
from routing.protocol import ProtocolTypeRouter
from routing.url import URLRouter

__all__ = [
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
