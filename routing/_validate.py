"""Construction-time checks that a value can be called as an ASGI application."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import cast

from routing.exceptions import InvalidApplication
from routing.types import ASGIApp


def check_application(value: object, where: str) -> ASGIApp:
    """Return ``value`` as an ASGI application, or raise naming ``where`` it was found."""
    if inspect.isclass(value) and hasattr(value, "as_asgi"):
        raise InvalidApplication(
            f"{where} is the consumer class {value.__qualname__}; "
            f"pass {value.__qualname__}.as_asgi() instead."
        )
    if not callable(value):
        raise InvalidApplication(
            f"{where} is {value!r}, which is not an ASGI application; expected an "
            "`async def app(scope, receive, send)` callable such as Consumer.as_asgi() "
            "or a router."
        )
    return cast(ASGIApp, value)


def check_mapping(mapping: object, router: str, key_name: str) -> dict[str, ASGIApp]:
    """Validate a ``{name: application}`` mapping given to ``router``."""
    if not isinstance(mapping, Mapping):
        raise InvalidApplication(
            f"{router} expects a mapping of {key_name} to ASGI applications, got {mapping!r}."
        )
    checked: dict[str, ASGIApp] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise InvalidApplication(
                f"{router} keys must be {key_name} strings, got {key!r} ({type(key).__name__})."
            )
        checked[key] = check_application(value, f"{router}[{key!r}]")
    return checked
