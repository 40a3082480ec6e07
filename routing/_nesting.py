"""Finding a router behind ASGI middleware, so it can be nested under a ``path()`` prefix."""

from __future__ import annotations

from typing import Any, TypeVar

# Attribute names under which common ASGI middleware keep the application they wrap: Channels'
# BaseMiddleware and its cookie/session/auth stack use ``inner``, OriginValidator uses
# ``application``, Starlette-style middleware use ``app``.
WRAPPED_APPLICATION_ATTRIBUTES = ("inner", "application", "app")
MAX_WRAPPER_DEPTH = 32

T = TypeVar("T")


def mark_router(application: T) -> T:
    """Declare that ``application`` routes on ``path_remaining`` like a nested ``URLRouter``.

    Use it for a custom wrapper that holds its router somewhere the automatic unwrapping cannot
    see, so that ``path("prefix/", mark_router(wrapper))`` treats the route as a prefix::

        chat = mark_router(TenantMiddleware(routers_by_tenant))
    """
    application._path_routing = True  # type: ignore[attr-defined]
    return application


def declares_routing(application: object) -> bool:
    """Whether ``application`` says it routes on ``path_remaining`` (Channels' convention)."""
    return getattr(application, "_path_routing", False) is True


def _wrapped(application: object) -> object | None:
    # Read instance attributes only: a property on an arbitrary object could do anything.
    attributes: dict[str, Any] = getattr(application, "__dict__", {})
    for name in WRAPPED_APPLICATION_ATTRIBUTES:
        inner: object = attributes.get(name)
        if inner is not None and callable(inner):
            return inner
    return None


def unwrap(application: object) -> tuple[bool, object | None]:
    """Follow middleware down from ``application``.

    Returns whether any layer declares path routing, and the first layer that is itself a path
    router (``None`` when the routing layer could not be reached, e.g. only a marker was set).
    """
    declared = False
    current: object | None = application
    seen: set[int] = set()
    while current is not None and id(current) not in seen and len(seen) < MAX_WRAPPER_DEPTH:
        seen.add(id(current))
        if declares_routing(current):
            declared = True
            if type(current).__name__ == "URLRouter":
                return True, current
        current = _wrapped(current)
    return declared, None
