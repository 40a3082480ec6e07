"""The live feed of the Channels and Workers pages: a WebSocket consumer for staff with the
pages' view permissions, pushing what the pages show every few seconds.

Mounted in the project's websocket router, behind ``AuthMiddlewareStack`` and the origin
validator::

    URLRouter([admin_live_path, *websocket_urlpatterns])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.urls import URLPattern, path

from worker.admin import readers
from worker.admin.pages import LIVE_PATH
from worker.backoff import Backoff
from worker.errors import redis_fault

logger = logging.getLogger(__name__)

#: Seconds between two pushes.
PUSH_INTERVAL_S = 2.0
#: Seconds of wait after each second a push took, at the least.
PAUSE_PER_PUSH = 9.0
#: Closed with this code when the user may not see the pages (the admin's 403).
FORBIDDEN_CLOSE_CODE = 4403
#: Seconds between two checks that the user may still see the pages: logged out, password
#: changed, no longer staff or without the permission, the feed closes with 4403.
RECHECK_INTERVAL_S = 30.0
#: Closed with this code when the feed fails for a reason other than Redis.
INTERNAL_ERROR_CLOSE_CODE = 1011
VIEW_CHANNEL = "channel_worker.view_channel"
VIEW_WORKER = "channel_worker.view_worker"


def pause_s(interval_s: float, push_s: float) -> float:
    """The wait before the next push: ``interval_s``, or longer when the last push took long
    (its reads grow with Redis's keyspace), so one open page never keeps Redis busy for more
    than a ``1 / (PAUSE_PER_PUSH + 1)`` share of the time."""
    return max(interval_s, push_s * PAUSE_PER_PUSH)


def _permissions(user: Any) -> tuple[bool, bool]:
    """(may see channels, may see workers) for an active staff ``user``; both False otherwise."""
    if user is None or not user.is_active or not user.is_staff:
        return False, False
    return user.has_perm(VIEW_CHANNEL), user.has_perm(VIEW_WORKER)


def _permissions_now(scope: Mapping[str, Any]) -> tuple[bool, bool]:
    """``_permissions()`` of the connection's user as it is now: read again from the session
    (a logout or a password change leaves no user), or from the database without one."""
    session = scope.get("session")
    if session is not None:
        from django.contrib.auth import get_user

        # A fresh store, not the connection's: that one keeps what it read at the handshake.
        fresh = import_module(settings.SESSION_ENGINE).SessionStore(session.session_key)
        return _permissions(get_user(SimpleNamespace(session=fresh)))  # type: ignore[arg-type]
    from django.contrib.auth import get_user_model

    user = scope.get("user")
    if user is None or user.pk is None:
        return False, False
    return _permissions(get_user_model()._default_manager.filter(pk=user.pk).first())


class AdminLiveConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # untyped base
    """Sends ``{"channels": [...], "workers": [...]}`` every ``PUSH_INTERVAL_S``, each part only
    to a user with its view permission; accepts and at once closes with 4403 for anyone else."""

    # No channel layer of its own: it joins no group and receives no channel messages, so it
    # costs no layer connection per open page (an unknown alias means no layer).
    channel_layer_alias = "channel-worker-admin-live-has-no-layer"
    layer_alias = "default"

    def __init__(
        self, *, interval_s: float = PUSH_INTERVAL_S, recheck_s: float = RECHECK_INTERVAL_S
    ) -> None:
        """``as_asgi(interval_s=..., recheck_s=...)`` sets how often it pushes and checks the
        user again (Channels' base class ignores the keywords it is given)."""
        super().__init__()
        self.interval_s = interval_s
        self.recheck_s = recheck_s

    async def connect(self) -> None:
        self.sees_channels, self.sees_workers = await database_sync_to_async(_permissions)(
            self.scope.get("user")
        )
        await self.accept()
        if not (self.sees_channels or self.sees_workers):
            # Closed after the handshake, so the browser's close event carries the code: a
            # close before it reaches the page as a failed connection (1006), retried in vain.
            await self.close(code=FORBIDDEN_CLOSE_CODE)
            return
        self.pushing = asyncio.create_task(self._push_until_closed())

    async def disconnect(self, code: int) -> None:
        pushing: asyncio.Task[None] | None = getattr(self, "pushing", None)
        if pushing is not None:
            pushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pushing

    async def _push_until_closed(self) -> None:
        try:
            await self._push()
        except Exception:
            # Not Redis (which _push rides out): say why once and end this page's feed; the
            # page falls back to showing what it was loaded with.
            logger.exception("Admin live feed stopped")
            await self.close(code=INTERNAL_ERROR_CLOSE_CODE)

    async def _push(self) -> None:
        """Push, and through a Redis outage say so once, back off and recover."""
        from worker.project import load_layer

        layer = load_layer(self.layer_alias)
        backoff, problem = Backoff(self.interval_s, 30.0), None
        checked_at = time.monotonic()
        while True:
            if time.monotonic() - checked_at >= self.recheck_s:
                if not await self._still_allowed():
                    return
                checked_at = time.monotonic()
            started = time.monotonic()
            try:
                await self.send_json(await self._snapshot(layer))
            except Exception as error:
                fault = redis_fault(error)
                if fault is None:
                    raise
                if problem is None:
                    logger.warning("Admin live feed cannot read Redis: %s", fault.reason)
                problem = fault.reason
                await self.send_json({"problem": f"Redis unavailable: {fault.reason}"})
                await backoff.wait()
                continue
            if problem is not None:
                logger.info("Admin live feed reads Redis again")
                problem = None
                backoff.reset()
            await asyncio.sleep(pause_s(self.interval_s, time.monotonic() - started))

    async def _still_allowed(self) -> bool:
        """Whether the user may still see a page; closes with 4403 when they may not."""
        self.sees_channels, self.sees_workers = await database_sync_to_async(_permissions_now)(
            self.scope
        )
        if self.sees_channels or self.sees_workers:
            return True
        await self.close(code=FORBIDDEN_CLOSE_CODE)
        return False

    async def _snapshot(self, layer: Any) -> dict[str, Any]:
        channels, workers = await readers.live_rows(
            layer, channels=self.sees_channels, workers=self.sees_workers
        )
        snapshot: dict[str, Any] = {}
        if channels is not None:
            snapshot["channels"] = [row.as_dict() for row in channels]
        if workers is not None:
            snapshot["workers"] = [row.as_dict() for row in workers]
        return snapshot


#: The one line for the project's websocket ``URLRouter``.
admin_live_path: URLPattern = path(LIVE_PATH, AdminLiveConsumer.as_asgi())
