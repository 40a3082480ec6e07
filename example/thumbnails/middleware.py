"""ASGI middleware for the gallery's WebSocket routes."""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.middleware import BaseMiddleware

logger = logging.getLogger(__name__)


class ConnectionLogMiddleware(BaseMiddleware):  # type: ignore[misc]  # channels is untyped
    """Logs when each WebSocket under it opens and closes, with its path and user.

    ::

        path("ws/", ConnectionLogMiddleware(URLRouter([path("gallery/", Gallery.as_asgi())])))
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        started = time.monotonic()
        path = scope.get("path", "")
        user = scope.get("user")
        logger.info("WebSocket %s opened by %s", path, user if user is not None else "anonymous")
        try:
            return await super().__call__(scope, receive, send)
        finally:
            logger.info("WebSocket %s closed after %.1f s", path, time.monotonic() - started)
