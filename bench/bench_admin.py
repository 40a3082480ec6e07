"""Render time of the admin's worker pages with 1,000,000 queued messages and 10,000 dead
letters on one channel, then of the Channels and Workers pages with 1,000,000 other keys in the
layer's database (kept task results, sessions).

Run from the repository root: ``python bench/bench_admin.py``. Starts its own redis-server,
fills it as a backlog and a full dead-letter store would, then renders each page with Django's
test client as a logged-in superuser, ``BENCH_ROUNDS`` times, and reports the median and the
slowest render. Target: every page under a second.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from bench._processes import redis_server

QUEUED = int(os.environ.get("BENCH_QUEUED", "1000000"))
DEAD = int(os.environ.get("BENCH_DEAD", "10000"))
UNRELATED = int(os.environ.get("BENCH_UNRELATED", "1000000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))
TARGET_S = 1.0
CHANNEL = "thumbnails-generate"
_BATCH = 10_000


def _configure(url: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench-only",
        USE_TZ=True,
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=[
            "worker",
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        ROOT_URLCONF="bench.admin_urls",
        STATIC_URL="static/",
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [url], "capacity": 10_000_000, "expiry": 3600},
            }
        },
    )
    django.setup()


async def _fill(url: str) -> None:
    """A backlog of ``QUEUED`` messages, ``DEAD`` dead letters and a live worker serving them."""
    from channels.layers import get_channel_layer
    from redis.asyncio import Redis

    from worker.ops.health import HealthRecord, write_health
    from worker.transport.dead_letters import DeadLetter, DeadLetters
    from worker.transport.keys import channel_key

    layer: Any = get_channel_layer()
    client = Redis.from_url(url)
    key, now = channel_key(layer.prefix, CHANNEL), time.time()
    for start in range(0, QUEUED, _BATCH):
        members = {
            layer.serialize({"type": "thumbnails.generate", "id": str(number)}): now
            for number in range(start, min(QUEUED, start + _BATCH))
        }
        await client.zadd(key, members)
    store = DeadLetters(layer, [client])
    for number in range(DEAD):
        message = {"type": "thumbnails.generate", "id": f"dead-{number}"}
        letter = DeadLetter(
            channel=CHANNEL,
            reason="failed 3 attempt(s); last: FileNotFoundError",
            attempts=3,
            message_type="thumbnails.generate",
            error_type="FileNotFoundError",
            error="No such file",
            traceback="Traceback (most recent call last):\n" + "  File ...\n" * 40,
        )
        await store.add(letter, layer.serialize(message))
    record = HealthRecord("bench:1:aaaa", 1, [CHANNEL], 5.0, time.time(), True)
    async with client.pipeline(transaction=False) as pipe:
        write_health(pipe, layer.prefix, record, 3600)
        await pipe.execute()
    await client.aclose()


async def _fill_unrelated(url: str) -> None:
    """``UNRELATED`` keys that are no worker's, as kept task results or sessions would be."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    for start in range(0, UNRELATED, _BATCH):
        await client.mset({f"other:{n}": "x" for n in range(start, min(UNRELATED, start + _BATCH))})
    await client.aclose()


def _timings(client: Any, path: str) -> list[float]:
    timings = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        response = client.get(path)
        timings.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}")
    return timings


def main() -> None:
    with redis_server() as url:
        _configure(url)
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.test import Client

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        asyncio.run(_fill(url))
        print(
            f"Filled Redis with {QUEUED:,} queued messages and {DEAD:,} dead letters on "
            f"{CHANNEL} in {time.perf_counter() - started:.0f} s; {ROUNDS} renders per page."
        )
        client = Client()
        client.force_login(User.objects.create_superuser("bench", password="bench"))
        last_page = -(-DEAD // 100)
        pages = {
            "Channels": "/admin/channel_worker/channel/",
            "Workers": "/admin/channel_worker/worker/",
            "Dead letters (channels)": "/admin/channel_worker/deadletter/",
            "Dead letters, first page": f"/admin/channel_worker/deadletter/{CHANNEL}/",
            f"Dead letters, page {last_page}": (
                f"/admin/channel_worker/deadletter/{CHANNEL}/?p={last_page}"
            ),
        }
        print(f"| Page | median | slowest | under {TARGET_S:g} s |")
        print("| --- | ---: | ---: | --- |")
        for name, path in pages.items():
            _row(name, _timings(client, path))
        asyncio.run(_fill_unrelated(url))
        for name in ("Channels", "Workers"):
            _row(f"{name}, {UNRELATED:,} other keys", _timings(client, pages[name]))
        _requeue_all(client)


def _row(name: str, timings: list[float]) -> None:
    median_ms, slowest_ms = statistics.median(timings) * 1000, max(timings) * 1000
    verdict = "yes" if max(timings) < TARGET_S else "NO"
    print(f"| {name} | {median_ms:.1f} ms | {slowest_ms:.1f} ms | {verdict} |")


def _requeue_all(client: Any) -> None:
    """One confirmed "Requeue all": how long it takes and how many letters it puts back."""
    from worker.admin.dead_letter_pages import MAX_REQUEUED_AT_ONCE

    path = f"/admin/channel_worker/deadletter/{CHANNEL}/requeue/"
    start = time.perf_counter()
    response = client.post(path, {"all": "1", "confirm": "yes"})
    elapsed_s = time.perf_counter() - start
    if response.status_code != 302:
        raise RuntimeError(f"POST {path} answered {response.status_code}")
    print(
        f"Requeue all: {min(DEAD, MAX_REQUEUED_AT_ONCE):,} dead letters put back in "
        f"{elapsed_s:.1f} s (at most {MAX_REQUEUED_AT_ONCE:,} a request)."
    )


if __name__ == "__main__":
    main()
