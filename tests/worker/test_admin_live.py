"""The admin's live feed: a WebSocket for staff with the pages' view permissions, pushing the
Channels and Workers rows as they change; closed for everyone else."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.test import Client, override_settings

from routing import ProtocolTypeRouter, URLRouter
from routing.types import ASGIApp
from tests.redis_server import RedisServer
from tests.routing.asgi_fakes import WebsocketClient
from tests.worker.admin_site import (
    CHANNEL,
    account,
    installed,
    send_messages,
    site,
    write_health,
)
from tests.worker.tasks_project.settings import layers
from worker import admin_live_path
from worker.admin.live import FORBIDDEN_CLOSE_CODE, PAUSE_PER_PUSH, AdminLiveConsumer, pause_s
from worker.admin.pages import LIVE_PATH

pytestmark = pytest.mark.redis

__all__ = ["installed", "site"]  # the fixtures, imported for this module's tests

RECEIVE_TIMEOUT_S = 5.0


def communicator(user: Any, session: Any = None) -> WebsocketClient:
    """The feed for ``user`` (and ``session``, as ``AuthMiddlewareStack`` gives them), pushing
    and checking the user again every 50 ms."""
    consumer = AdminLiveConsumer.as_asgi(interval_s=0.05, recheck_s=0.05)
    feed = WebsocketClient(consumer, f"/{LIVE_PATH}")
    feed.scope["user"] = user
    if session is not None:
        feed.scope["session"] = session
    return feed


def close_code_after(feed: WebsocketClient, change: Callable[[], object]) -> int:
    """Connect ``feed``, see a push, make ``change`` (in this thread, whose database the
    consumer reads), then the code the feed closes with."""

    async def watch() -> int:
        assert (await feed.connect())[0]
        assert "channels" in await snapshot_of(feed)
        await sync_to_async(change)()
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while (message := await feed.receive_output(RECEIVE_TIMEOUT_S))["type"] != (
            "websocket.close"
        ):
            assert time.monotonic() < deadline, "the feed is still open"
        return int(message["code"])

    return async_to_sync(watch)()


async def snapshot_of(feed: WebsocketClient) -> dict[str, Any]:
    message = await feed.receive_output(RECEIVE_TIMEOUT_S)
    assert message["type"] == "websocket.send", message
    decoded: dict[str, Any] = json.loads(message["text"])
    return decoded


def refusal(user: Any) -> int | None:
    """The code the feed closes with right after accepting ``user``; None when it pushes."""

    async def connect() -> int | None:
        feed = communicator(user)
        connected, answer = await feed.connect()
        # Accepted even when refused, so that a browser's close event carries the code.
        assert connected, answer
        first = await feed.receive_output(RECEIVE_TIMEOUT_S)
        if first["type"] == "websocket.close":
            return int(first["code"])
        await feed.disconnect()
        return None

    # From this thread, so the consumer's permission check reads this thread's database.
    return async_to_sync(connect)()


def queued_on(snapshot: dict[str, Any]) -> int | None:
    rows = [row for row in snapshot.get("channels", []) if row["channel"] == CHANNEL]
    return rows[0]["queued"] if rows else None


def test_the_feed_pushes_a_channels_counts_as_they_change(site: str) -> None:
    write_health(site, "web-1:4242:aaaa", [CHANNEL])
    send_messages(site, CHANNEL, 2)
    user = account("root", superuser=True)

    async def watch() -> list[int | None]:
        feed = communicator(user)
        connected, _ = await feed.connect()
        assert connected
        seen = [queued_on(await snapshot_of(feed))]
        await sync_to_async(send_messages)(site, CHANNEL, 3)
        while seen[-1] != 5:
            snapshot = await snapshot_of(feed)
            assert [row["worker_id"] for row in snapshot["workers"]] == ["web-1:4242:aaaa"]
            seen.append(queued_on(snapshot))
        await feed.disconnect()
        return seen

    seen = async_to_sync(watch)()
    assert seen[0] == 2
    assert seen[-1] == 5


def test_a_user_sees_only_the_parts_they_may_view(site: str) -> None:
    write_health(site, "web-1:4242:aaaa", [CHANNEL])
    user = account("clerk", perms=("view_channel",))

    async def first() -> dict[str, Any]:
        feed = communicator(user)
        assert (await feed.connect())[0]
        snapshot: dict[str, Any] = await snapshot_of(feed)
        await feed.disconnect()
        return snapshot

    snapshot = async_to_sync(first)()
    assert "workers" not in snapshot
    assert queued_on(snapshot) == 0


def test_the_feed_closes_with_4403_for_anyone_not_staff_with_a_view_permission(site: str) -> None:
    assert refusal(AnonymousUser()) == FORBIDDEN_CLOSE_CODE
    assert refusal(None) == FORBIDDEN_CLOSE_CODE
    assert refusal(account("visitor", staff=False, perms=("view_channel",))) == FORBIDDEN_CLOSE_CODE
    assert refusal(account("clerk", perms=("view_deadletter", "change_deadletter"))) == (
        FORBIDDEN_CLOSE_CODE
    )
    inactive = account("gone", superuser=True)
    inactive.is_active = False
    assert refusal(inactive) == FORBIDDEN_CLOSE_CODE
    assert refusal(account("watcher", perms=("view_worker",))) is None


def test_the_feed_closes_once_the_user_logs_out(site: str) -> None:
    write_health(site, "web-1:4242:aaaa", [CHANNEL])
    user = account("clerk", perms=("view_channel",))
    browser = Client()
    browser.force_login(user)
    session = browser.session

    assert close_code_after(communicator(user, session), browser.logout) == FORBIDDEN_CLOSE_CODE


def test_the_feed_closes_once_the_user_loses_the_permission_or_staff(site: str) -> None:
    write_health(site, "web-1:4242:aaaa", [CHANNEL])
    clerk = account("clerk", perms=("view_channel",))
    former = account("former", perms=("view_channel",))

    def no_longer_staff() -> None:
        User.objects.filter(pk=former.pk).update(is_staff=False)

    assert close_code_after(communicator(clerk), clerk.user_permissions.clear) == (
        FORBIDDEN_CLOSE_CODE
    )
    assert close_code_after(communicator(former), no_longer_staff) == FORBIDDEN_CLOSE_CODE


def test_a_slow_push_stretches_the_wait_before_the_next() -> None:
    assert pause_s(2.0, 0.01) == 2.0
    # A push that took 0.8 s (Redis scanning a million keys) waits 7.2 s: a tenth of the time.
    assert pause_s(2.0, 0.8) == pytest.approx(0.8 * PAUSE_PER_PUSH)
    assert 0.8 / (0.8 + pause_s(2.0, 0.8)) == pytest.approx(0.1)


def test_the_feed_rides_out_a_redis_outage_and_resumes(
    installed: None, own_redis_server: RedisServer
) -> None:
    url = own_redis_server.url
    write_health(url, "web-1:4242:aaaa", [CHANNEL])
    user = account("root", superuser=True)

    async def watch() -> tuple[str, int | None]:
        feed = communicator(user)
        assert (await feed.connect())[0]
        assert queued_on(await snapshot_of(feed)) == 0
        await sync_to_async(own_redis_server.stop)()
        while "problem" not in (snapshot := await snapshot_of(feed)):
            pass
        problem = snapshot["problem"]
        await sync_to_async(own_redis_server.start)()
        await sync_to_async(write_health)(url, "web-1:4242:aaaa", [CHANNEL])
        await sync_to_async(send_messages)(url, CHANNEL, 1)
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while queued_on(snapshot := await snapshot_of(feed)) != 1:
            assert time.monotonic() < deadline, f"not recovered: {snapshot}"
        await feed.disconnect()
        return problem, queued_on(snapshot)

    with override_settings(CHANNEL_LAYERS=layers(url)):
        problem, queued = async_to_sync(watch)()
    assert problem.startswith("Redis unavailable")
    assert queued == 1


def project_application() -> ASGIApp:
    """The ASGI application docs/admin.md has a project write, with the feed as its route
    (http left to the router's default, Django's own application, built at the first request)."""
    return ProtocolTypeRouter(
        {
            "websocket": AllowedHostsOriginValidator(
                AuthMiddlewareStack(URLRouter([admin_live_path]))
            ),
        }
    )


def browser_of(user: User, origin: str) -> WebsocketClient:
    """The feed opened by a page at ``origin`` in a browser where ``user`` logged in to the
    admin: the session cookie goes with it, as browsers send it."""
    browser = Client()
    browser.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    headers = [
        (b"host", b"testserver"),
        (b"origin", origin.encode()),
        (b"cookie", cookie.encode()),
    ]
    return WebsocketClient(project_application(), f"/{LIVE_PATH}", headers)


def test_the_feed_mounted_as_documented_pushes_to_staff_logged_in_to_the_admin(site: str) -> None:
    write_health(site, "web-1:4242:aaaa", [CHANNEL])
    send_messages(site, CHANNEL, 2)
    feed = browser_of(account("clerk", perms=("view_channel",)), "http://testserver")

    async def first() -> dict[str, Any]:
        connected, answer = await feed.connect()
        assert connected, answer
        snapshot = await snapshot_of(feed)
        await feed.disconnect()
        return snapshot

    snapshot = async_to_sync(first)()
    # The session's user, with the permissions they have: the channels part, not the workers.
    assert queued_on(snapshot) == 2
    assert "workers" not in snapshot


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://testserver.evil.example", "null"]
)
def test_the_feed_mounted_as_documented_refuses_another_sites_page(site: str, origin: str) -> None:
    write_health(site, "web-1:4242:aaaa", [CHANNEL])
    # The admin's own user's cookies, sent along by the browser to another site's page.
    feed = browser_of(account("root", superuser=True), origin)

    connected, answer = async_to_sync(feed.connect)()

    assert not connected
    assert answer["type"] == "websocket.close", answer
