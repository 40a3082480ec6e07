"""The task functions ``bench_tasks.py`` runs on every backend, and their thread-safe recorder.

A task notes ``time.perf_counter()`` and a count in memory (``bench.worker_apps.Recorder``); the
summary goes to Redis after the first task (so the benchmark knows the worker is running) and
when the expected count is reached.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

from django.tasks import default_task_backend, task

from bench.worker_apps import SLEEP_S, Recorder


class TaskRecorder(Recorder):
    """``Recorder`` for tasks that several threads run at once."""

    def __init__(self, url: str | None, expected: int) -> None:
        self._lock = threading.Lock()
        super().__init__(url, expected, 0.0)

    def begin(self) -> None:
        with self._lock:
            super().begin()

    def end(self) -> None:
        with self._lock:
            super().end()
            if self.count == 1 and self.expected > 1:
                self.flush()


RECORDER = TaskRecorder(
    os.environ.get("BENCH_REDIS_URL"), int(os.environ.get("BENCH_EXPECTED", "0"))
)


@task()
def noop_sync() -> None:
    RECORDER.end()


@task()
def sleep_sync() -> None:
    """Waits 10 ms in ``time.sleep``, as a sync call to another service would."""
    RECORDER.begin()
    time.sleep(SLEEP_S)
    RECORDER.end()


@task()
def latency_sync(sent_at: float) -> None:
    """Notes how long after its ``sent_at`` (``time.time()`` at enqueue) it started."""
    RECORDER.latency(sent_at)
    RECORDER.end()


# huey's HueyBackend refuses async functions as soon as they are decorated.
if default_task_backend.supports_async_task:

    @task()
    async def noop_async() -> None:
        RECORDER.end()

    @task()
    async def sleep_async() -> None:
        """Waits 10 ms in ``asyncio.sleep``, as an async call to another service would."""
        RECORDER.begin()
        await asyncio.sleep(SLEEP_S)
        RECORDER.end()
