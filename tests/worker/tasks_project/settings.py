"""Settings of the send and Tasks tests' project; ``REDIS_URL`` is the layer's host.

The test process uses ``tests.settings`` with the same values applied by ``project_settings()``;
``runworker`` subprocesses use this module.
"""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "send-tests-only-not-secret"
DEBUG = False
USE_TZ = True
DATABASES: dict[str, Any] = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
}
INSTALLED_APPS = ["worker", "channels"]
ASGI_APPLICATION = "tests.worker.tasks_project.asgi.application"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def layers(url: str, **config: Any) -> dict[str, Any]:
    # A long expiry keeps queued test messages, and the worker does not warn.
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [url], "expiry": 3600, **config},
        }
    }


def tasks(**options: Any) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "worker.tasks.ChannelLayerBackend",
            "QUEUES": ["default", "other"],
            "OPTIONS": {"RESULT_TTL_S": 600, **options},
        }
    }


# Two attempts with a short backoff, so a failing task is retried once, quickly.
WORKER = {
    "CHANNELS": {
        "tasks.default": {
            "max_attempts": 2,
            "retry_backoff_min_s": 0.05,
            "retry_backoff_max_s": 0.05,
        }
    }
}

CHANNEL_LAYERS = layers(REDIS_URL)
TASKS = tasks()
CHANNEL_WORKER = WORKER
