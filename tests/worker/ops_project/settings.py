"""Settings of the operations tests' project: the layer's Redis comes from ``REDIS_URL``."""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "ops-tests-only-not-secret"
DEBUG = False
USE_TZ = True
DATABASES: dict[str, Any] = {}
INSTALLED_APPS = ["worker", "channels"]

# The package's own name, so that a copy of the project under another name runs unchanged.
ASGI_APPLICATION = f"{__package__}.asgi.application"

# Read by the consumers too, so they record what they handled on the layer's own Redis.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # Long enough that queued test messages never expire, and the worker does not warn.
        "CONFIG": {"hosts": [REDIS_URL], "expiry": 3600},
    }
}
