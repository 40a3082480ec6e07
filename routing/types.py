"""ASGI type aliases shared by the routers and the worker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
# Routers pass an application's return value back up, as Channels' routers do.
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[Any]]

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]
