"""A project that only uses ``django.tasks``: no ASGI application, no Channels routing.

Only ``INSTALLED_APPS``, ``CHANNEL_LAYERS`` and ``TASKS``, as in the docs' Tasks quickstart;
``REDIS_URL`` is the layer's host; ``DJANGO_DEBUG=1`` turns ``DEBUG`` on, as a new project has it.
"""

from __future__ import annotations

import os
from typing import Any

import django

DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
INSTALLED_APPS = ["worker"]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")


def layers(url: str) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [url], "expiry": 3600},
        }
    }


CHANNEL_LAYERS = layers(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
TASKS = {"default": {"BACKEND": "worker.tasks.ChannelLayerBackend"}}
