"""``ChannelNameRouter``: dispatch worker scopes on ``scope["channel"]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from routing._validate import check_mapping
from routing.exceptions import MissingScopeKey, UnknownChannel, quoted_list
from routing.types import ASGIApp, Receive, Scope, Send


class ChannelNameRouter:
    """Route ``{"type": "channel", "channel": name}`` scopes by channel name.

    ::

        ChannelNameRouter({
            "thumbnails-generate": GenerateConsumer.as_asgi(),
            "thumbnails-delete": DeleteConsumer.as_asgi(),
        })
    """

    def __init__(self, application_mapping: Mapping[str, ASGIApp]) -> None:
        self.applications = check_mapping(application_mapping, "ChannelNameRouter", "channel names")

    @property
    def application_mapping(self) -> dict[str, ASGIApp]:
        """The mapping, under the name Channels uses."""
        return self.applications

    @property
    def channels(self) -> frozenset[str]:
        """The channel names this router serves."""
        return frozenset(self.applications)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        try:
            application = self.applications[scope["channel"]]
        except KeyError:
            raise self._error(scope) from None
        return await application(scope, receive, send)

    def _error(self, scope: Scope) -> Exception:
        if "channel" not in scope:
            return MissingScopeKey(
                f"ChannelNameRouter got a scope without a 'channel' key (type "
                f"{scope.get('type')!r}); use it only for 'channel' scopes, under "
                "ProtocolTypeRouter({'channel': ...})."
            )
        return UnknownChannel(
            f"No application for channel {scope['channel']!r}; "
            f"known channels: {quoted_list(sorted(self.applications))}."
        )
