"""Helpers for the send, Tasks and testing-aid tests: the project's settings and its runworker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from django.test import override_settings

from tests.worker.process_helpers import REPO_ROOT, WorkerProcess, runworker_command, worker_env
from tests.worker.tasks_project import settings as project
from tests.worker.tasks_project.consumers import HANDLED_KEY
from worker.sending.pools import close_connections

SETTINGS_MODULE = "tests.worker.tasks_project.settings"


@contextmanager
def project_settings(
    redis_url: str,
    *,
    layer: dict[str, Any] | None = None,
    worker: dict[str, Any] | None = None,
    tasks: dict[str, Any] | None = None,
) -> Iterator[None]:
    """The test project's settings in this process, on ``redis_url``; send pools closed after.

    ``layer`` adds to the layer's CONFIG, ``worker`` replaces CHANNEL_WORKER, ``tasks`` adds to
    the task backend's OPTIONS.
    """
    with override_settings(
        CHANNEL_LAYERS=project.layers(redis_url, **(layer or {})),
        TASKS=project.tasks(**(tasks or {})),
        ASGI_APPLICATION=project.ASGI_APPLICATION,
        CHANNEL_WORKER=project.WORKER if worker is None else worker,
    ):
        try:
            yield
        finally:
            close_connections()


def start_runworker(redis_url: str, *channels: str) -> WorkerProcess:
    """``runworker`` serving the test project's ``channels``, once its start-up line is logged."""
    env = worker_env({"address": redis_url}) | {"DJANGO_SETTINGS_MODULE": SETTINGS_MODULE}
    process = WorkerProcess(runworker_command(*channels), env, REPO_ROOT)
    try:
        process.wait_for_line(rf"Worker \S+ consuming {re.escape(channels[0])} ")
    except BaseException:
        process.close()
        raise
    return process


def handled(redis_url: str) -> list[dict[str, Any]]:
    """What the project's consumer recorded, oldest first."""
    with redis.Redis.from_url(redis_url) as client:
        raw: list[bytes] = client.lrange(HANDLED_KEY, 0, -1)
    return [json.loads(entry) for entry in raw]
