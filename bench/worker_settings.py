"""Django settings shared by both runworkers in ``bench_worker.py``; the environment picks the app.

``BENCH_REDIS_URL`` selects a channels-redis layer (without it, the in-memory layer used by the
in-process dispatch ceiling), and ``BENCH_APPLICATION`` names an application in
``bench.worker_apps``.
"""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
USE_TZ = True
# Channels' own runworker needs its app; ours must run without being installed.
INSTALLED_APPS = ["channels"]
DATABASES: dict[str, Any] = {}
ASGI_APPLICATION = f"bench.worker_apps.{os.environ.get('BENCH_APPLICATION', 'noop_consumer')}"


def layer_config(url: str) -> dict[str, Any]:
    """The channels-redis configuration both workers and the benchmark's sender use."""
    # socket_timeout None: redis-py's 5 s read timeout equals channels-redis's blocking wait,
    # which kills Channels' idle worker. The capacity and expiry fit the largest backlog.
    return {
        "hosts": [{"address": url, "socket_timeout": None}],
        "capacity": 2_000_000,
        "expiry": 3600,
    }


_redis_url = os.environ.get("BENCH_REDIS_URL")
CHANNEL_LAYERS: dict[str, Any] = {
    "default": (
        {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": layer_config(_redis_url)}
        if _redis_url
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}
