"""Django settings for ``bench_tasks.py``: one task backend per run, picked by the environment.

``BENCH_TASK_BACKEND`` is ``ours`` (``ChannelLayerBackend``), ``threadmill`` or ``huey``
(``HueyBackend``); ``BENCH_REDIS_URL`` is the one redis-server all of them use.
"""

from __future__ import annotations

import os
from typing import Any

from bench.worker_settings import layer_config

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
USE_TZ = True
DATABASES: dict[str, Any] = {}

BACKEND = os.environ.get("BENCH_TASK_BACKEND", "ours")
_redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

# Every backend's worker sees the same layer, so ours and the peers pay for the same settings.
CHANNEL_LAYERS: dict[str, Any] = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": layer_config(_redis_url),
    }
}
INSTALLED_APPS: list[str]
TASKS: dict[str, Any]
if BACKEND == "threadmill":
    INSTALLED_APPS = ["threadmill"]
    TASKS = {
        "default": {
            "BACKEND": "threadmill.backends.redis.RedisTaskBackend",
            "REDIS_URL": _redis_url,
        }
    }
elif BACKEND == "huey":
    INSTALLED_APPS = ["huey.contrib.djhuey"]
    HUEY = {
        "huey_class": "huey.RedisHuey",
        "name": "bench",
        "immediate": False,
        "connection": {"url": _redis_url},
    }
    TASKS = {"default": {"BACKEND": "huey.contrib.djhuey.tasks_backend.HueyBackend"}}
elif BACKEND == "ours":
    INSTALLED_APPS = ["worker"]
    TASKS = {"default": {"BACKEND": "worker.tasks.ChannelLayerBackend"}}
else:
    raise ValueError(f"BENCH_TASK_BACKEND is {BACKEND!r}; expected 'ours', 'threadmill' or 'huey'.")
