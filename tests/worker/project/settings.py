"""Settings of the process tests' project, switched by environment variables.

``REDIS_URL`` is the layer's host (``rediss://`` with ``CW_TEST_REDIS_CA`` naming the CA file);
``CW_TEST_LAYER`` is ``redis`` (default), ``none``, ``memory`` or ``pubsub``;
``CW_TEST_APPS_ORDER=channels-first`` lists "channels" before "worker" in INSTALLED_APPS.
"""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "process-tests-only-not-secret"
DEBUG = False
USE_TZ = True
DATABASES: dict[str, Any] = {}

_APPS = ["worker", "channels"]
INSTALLED_APPS = _APPS[::-1] if os.environ.get("CW_TEST_APPS_ORDER") == "channels-first" else _APPS

ASGI_APPLICATION = "tests.worker.project.asgi.application"

# Read by the consumers too, so they record results on the layer's own Redis.
REDIS_HOST: dict[str, Any] = {"address": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")}
if os.environ.get("CW_TEST_REDIS_CA"):
    REDIS_HOST |= {"ssl_ca_certs": os.environ["CW_TEST_REDIS_CA"], "ssl_cert_reqs": "required"}

_LAYERS: dict[str, dict[str, Any]] = {
    "redis": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # Long enough that queued test messages never expire, and the worker does not warn.
        "CONFIG": {"hosts": [REDIS_HOST], "expiry": 3600},
    },
    "memory": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
    "pubsub": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_HOST]},
    },
}
_LAYER = os.environ.get("CW_TEST_LAYER", "redis")
if _LAYER != "none":
    CHANNEL_LAYERS = {"default": _LAYERS[_LAYER]}
