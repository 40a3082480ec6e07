"""The schedule tests' project in this process, and reading what its schedules did in Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from django.test import override_settings

from tests.worker.schedules_project import settings as project
from tests.worker.schedules_project.consumers import TICKS_KEY
from tests.worker.tasks_project import settings as tasks_project
from tests.worker.test_cli_process import Processes
from worker.sending.pools import close_connections

SETTINGS_MODULE = "tests.worker.schedules_project.settings"
#: A channel the project routes, whose consumer records each scheduled message.
CHANNEL = "maintenance"
SWEEP = {"channel": CHANNEL, "message": {"type": "sweep.run"}}


@contextmanager
def schedule_settings(
    redis_url: str, schedules: Mapping[str, Any], **worker: Any
) -> Iterator[None]:
    """The project's settings with ``schedules``; ``worker`` adds to ``CHANNEL_WORKER``."""
    with override_settings(
        CHANNEL_LAYERS=tasks_project.layers(redis_url),
        TASKS=tasks_project.tasks(),
        ASGI_APPLICATION=project.ASGI_APPLICATION,
        CHANNEL_WORKER={**tasks_project.WORKER, "SCHEDULES": dict(schedules), **worker},
    ):
        try:
            yield
        finally:
            close_connections()


def recorded_ticks(redis_url: str) -> list[dict[str, Any]]:
    """What the project's consumer recorded (running in a runworker), oldest first."""
    with redis.Redis.from_url(redis_url) as client:
        raw: list[bytes] = client.lrange(TICKS_KEY, 0, -1)
    return [json.loads(entry) for entry in raw]


@pytest.fixture(name="processes")
def processes_fixture() -> Iterator[Processes]:
    """Start ``runworker`` processes; each is closed when the test ends."""
    started = Processes()
    yield started
    for process in started.started:
        process.close()
