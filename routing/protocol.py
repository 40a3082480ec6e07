"""``ProtocolTypeRouter``: dispatch on ``scope["type"]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from routing._validate import check_mapping
from routing.exceptions import MissingScopeKey, UnknownProtocol, quoted_list
from routing.types import ASGIApp, Receive, Scope, Send


class _DjangoASGIApplication:
    """Stands in for Django's ASGI handler until the first http scope arrives.

    Built lazily so that importing a routing module needs no configured settings.
    """

    def __init__(self, router: ProtocolTypeRouter) -> None:
        self._router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        from django.core.asgi import get_asgi_application

        application = cast("ASGIApp", get_asgi_application())
        self._router.applications["http"] = application
        return await application(scope, receive, send)


class ProtocolTypeRouter:
    """Route each connection to the application registered for its ``scope["type"]``.

    When no ``"http"`` application is given, http goes to Django's own ASGI application::

        application = ProtocolTypeRouter({
            "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
            "channel": ChannelNameRouter({"thumbnails-generate": ThumbnailConsumer.as_asgi()}),
        })
    """

    def __init__(self, application_mapping: Mapping[str, ASGIApp]) -> None:
        self.applications = check_mapping(application_mapping, "ProtocolTypeRouter", "scope types")
        if "http" not in self.applications:
            self.applications["http"] = _DjangoASGIApplication(self)

    @property
    def application_mapping(self) -> dict[str, ASGIApp]:
        """The mapping, under the name Channels uses."""
        return self.applications

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        try:
            application = self.applications[scope["type"]]
        except KeyError:
            raise self._error(scope) from None
        return await application(scope, receive, send)

    def _error(self, scope: Scope) -> Exception:
        if "type" not in scope:
            return MissingScopeKey(
                f"ProtocolTypeRouter got a scope without a 'type' key: {dict(scope)!r}."
            )
        return UnknownProtocol(
            f"No application for scope type {scope['type']!r}; "
            f"known types: {quoted_list(sorted(self.applications))}."
        )
