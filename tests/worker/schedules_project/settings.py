"""Settings of the schedule tests' runworker processes: the Tasks tests' project plus a channel
that records each scheduled message, and schedules read from ``CW_TEST_SCHEDULES`` (JSON)."""

from __future__ import annotations

import json
import os
from typing import Any

from tests.worker.tasks_project.settings import WORKER, layers, tasks

SECRET_KEY = "schedule-tests-only-not-secret"
DEBUG = False
USE_TZ = True
DATABASES: dict[str, Any] = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
}
INSTALLED_APPS = ["worker", "channels"]
ASGI_APPLICATION = "tests.worker.schedules_project.asgi.application"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL_LAYERS = layers(REDIS_URL)
TASKS = {
    **tasks(),
    # Waits before each enqueue (see backends.py): served by `runworker tasks.slow`.
    "slow": {
        "BACKEND": "tests.worker.schedules_project.backends.SlowBackend",
        "QUEUES": ["slow"],
        "OPTIONS": {"RESULT_TTL_S": 600},
    },
}
CHANNEL_WORKER = {
    **WORKER,
    "SCHEDULES": json.loads(os.environ.get("CW_TEST_SCHEDULES", "{}")),
    "SCHEDULE_LEASE_S": float(os.environ.get("CW_TEST_SCHEDULE_LEASE_S", "10")),
}
