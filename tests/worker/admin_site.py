"""The admin tests' project: the suite's settings with Django's admin and the worker app
installed, a channel layer and task backend on a real redis-server, and ways to fill Redis as
workers do (health records, queued messages, dead letters)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.test import override_settings

from tests.redis_server import RedisServer
from tests.worker.tasks_project.settings import layers, tasks
from worker.ops.health import HealthRecord
from worker.ops.health import write_health as write_record
from worker.transport.dead_letters import DeadLetter, DeadLetters
from worker.transport.keys import channel_key

CHANNEL = "thumbnails-generate"
PASSWORD = "s3cret-pass"


@contextlib.contextmanager
def admin_installed(redis_url: str) -> Iterator[None]:
    """The admin and the worker app over the suite's settings, with their tables."""
    added = ["django.contrib.admin", "django.contrib.messages", "django.contrib.staticfiles"]
    apps = [*settings.INSTALLED_APPS]
    apps += [app for app in [*added, "worker"] if app not in apps]
    context = [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]
    with override_settings(
        INSTALLED_APPS=apps,
        ROOT_URLCONF="tests.worker.admin_urls",
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {"context_processors": context},
            }
        ],
        STATIC_URL="static/",
        CHANNEL_LAYERS=layers(redis_url),
        TASKS=tasks(),
        CHANNEL_WORKER={"CHANNELS": {CHANNEL: {"max_attempts": 3}}},
    ):
        call_command("migrate", verbosity=0)
        yield


@pytest.fixture(scope="module")
def installed(redis_session_server: RedisServer) -> Iterator[None]:
    """The admin over the suite's settings, for a test module, on the session's redis-server."""
    with admin_installed(redis_session_server.url):
        yield


@pytest.fixture
def site(installed: None, redis_url: str) -> str:
    """The admin on an empty Redis, with no users and an empty admin log; the Redis URL."""
    from django.contrib.admin.models import LogEntry  # loads once the admin is installed

    User.objects.all().delete()
    LogEntry.objects.all().delete()
    return redis_url


def account(
    name: str, *, staff: bool = True, superuser: bool = False, perms: tuple[str, ...] = ()
) -> User:
    """A user with ``perms`` of the worker's pages, fresh from the database (as
    ``AuthMiddlewareStack`` gives it, without cached permissions)."""
    user = User.objects.create_user(name, is_staff=staff, is_superuser=superuser)
    for codename in perms:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="channel_worker", codename=codename)
        )
    return User.objects.get(pk=user.pk)


def redis_layer(redis_url: str) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=[redis_url], expiry=3600)


def write_health(
    redis_url: str, worker_id: str, channels: list[str], *, problem: str | None = None
) -> HealthRecord:
    """The record a worker serving ``channels`` writes every interval."""
    record = HealthRecord(
        worker_id=worker_id,
        pid=4242,
        channels=channels,
        interval_s=5.0,
        updated_at=time.time(),
        healthy=problem is None,
        problem=problem,
        in_flight={channel: 1 for channel in channels},
        started_at=time.time() - 7500,
        event_loop="uvloop",
        channel_settings={
            channel: {"concurrency": 4, "delivery": "at-least-once"} for channel in channels
        },
    )
    layer = redis_layer(redis_url)
    with _client(redis_url) as client, client.pipeline(transaction=False) as pipe:
        write_record(pipe, layer.prefix, record, 15)
        pipe.execute()
    return record


def send_messages(redis_url: str, channel: str, count: int) -> None:
    async def send() -> None:
        layer = RedisChannelLayer(hosts=[redis_url], expiry=3600, capacity=100_000)
        for number in range(count):
            await layer.send(channel, {"type": "thumbnail.generate", "number": number})
        await layer.close_pools()

    async_to_sync(send)()


def add_dead_letters(
    redis_url: str, channel: str, messages: list[dict[str, Any]], reason: str = "failed"
) -> list[DeadLetter]:
    """Dead letters for ``messages``, as the worker stores them after the last attempt."""

    async def add() -> list[DeadLetter]:
        layer = redis_layer(redis_url)
        store = DeadLetters(layer)
        letters = []
        for number, message in enumerate(messages):
            letter = DeadLetter(
                channel=channel,
                reason=reason,
                attempts=3,
                message_type=message.get("type"),
                error_type="ValueError",
                error=f"boom {number}",
                traceback=f"Traceback (most recent call last):\nValueError: boom {number}",
                dead_at=time.time() + number * 0.001,
            )
            await store.add(letter, layer.serialize(message))
            letters.append(letter)
        await store.aclose()
        return letters

    return async_to_sync(add)()


def queued(redis_url: str, channel: str) -> int:
    layer = redis_layer(redis_url)
    with _client(redis_url) as client:
        return int(client.zcard(channel_key(layer.prefix, channel)))


def dead_count(redis_url: str, channel: str) -> int:
    async def count() -> int:
        store = DeadLetters(redis_layer(redis_url))
        try:
            return await store.count(channel)
        finally:
            await store.aclose()

    return async_to_sync(count)()


@contextlib.contextmanager
def _client(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()
