"""Settings of the fault tests' project: one channels-redis layer on ``REDIS_URL``."""

from __future__ import annotations

import json
import os
from typing import Any

SECRET_KEY = "fault-tests-only-not-secret"
DEBUG = False
USE_TZ = True
DATABASES: dict[str, Any] = {}
INSTALLED_APPS = ["worker", "channels"]
ASGI_APPLICATION = "tests.worker.faults_project.asgi.application"

# The consumers record what they handle on the layer's own Redis, or on RECORD_REDIS_URL when
# set: tests that make the layer's Redis fail keep their records elsewhere.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RECORD_REDIS_URL = os.environ.get("RECORD_REDIS_URL", REDIS_URL)

# LAYER_HOSTS, when set, is the layer's "hosts" as JSON: several hosts, or a Sentinel host.
LAYER_HOSTS: list[Any] = json.loads(os.environ.get("LAYER_HOSTS", "null")) or [REDIS_URL]

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # Queued test messages never expire, and the worker does not warn about expiry.
        "CONFIG": {"hosts": LAYER_HOSTS, "expiry": 3600},
    }
}

CHANNEL_WORKER = {
    # Retries come back within a maintenance tick, so poison messages die in a second or two.
    "RETRY_BACKOFF_MIN_S": 0.05,
    "RETRY_BACKOFF_MAX_S": 0.2,
}
