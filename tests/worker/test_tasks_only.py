"""A project that only uses ``django.tasks``: no ASGI_APPLICATION, no Channels routing."""

from __future__ import annotations

import re
import signal
from typing import Any

import pytest

from tests.worker.process_helpers import (
    REPO_ROOT,
    WorkerProcess,
    runworker_command,
    wait_until,
    worker_env,
)
from tests.worker.tasks_only_project.tasks import multiply
from worker.errors import ConfigurationError, UnknownChannel
from worker.project import load_application
from worker.sending.api import send
from worker.tasks.compat import TASKS_LOGGER, TaskResult, TaskResultStatus
from worker.testing.drain import drain

pytestmark = pytest.mark.redis

SETTINGS_MODULE = "tests.worker.tasks_only_project.settings"


def finished(result_id: str, worker: WorkerProcess) -> TaskResult[..., Any]:
    def done() -> TaskResult[..., Any] | None:
        result = multiply.get_result(result_id)
        return result if result.is_finished else None

    found = wait_until(done, "a finished result", log=worker)
    assert found is not None
    return found


@pytest.mark.e2e
def test_runworker_runs_tasks_of_a_project_without_an_asgi_application(
    redis_url: str, tasks_only: None
) -> None:
    env = worker_env({"address": redis_url}) | {"DJANGO_SETTINGS_MODULE": SETTINGS_MODULE}
    worker = WorkerProcess(runworker_command("tasks.default"), env, REPO_ROOT)
    try:
        worker.wait_for_line(r"Worker \S+ consuming tasks\.default ")
        result = multiply.enqueue(6, 7)
        done = finished(result.id, worker)
        assert done.status == TaskResultStatus.SUCCESSFUL, done.errors
        assert done.return_value == 42
        worker.send_signal(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output
    finally:
        worker.close()


@pytest.mark.e2e
@pytest.mark.parametrize(
    "settings_module",
    [
        SETTINGS_MODULE,
        # Its asgi.py calls get_asgi_application(), which sets Django's logging up again.
        "tests.worker.tasks_only_project.asgi_settings",
    ],
)
def test_each_task_state_is_logged_once_with_debug_on(
    redis_url: str, tasks_only: None, settings_module: str
) -> None:
    # Django's development console handler would print django.tasks lines a second time.
    env = worker_env({"address": redis_url}) | {
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DJANGO_DEBUG": "1",
    }
    worker = WorkerProcess(runworker_command("tasks.default"), env, REPO_ROOT)
    try:
        worker.wait_for_line(r"Worker \S+ consuming tasks\.default ")
        result = multiply.enqueue(6, 7)
        worker.wait_for_line(rf"id={result.id} .*state=SUCCESSFUL")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output
        lines = [line for line in worker.output.splitlines() if f"id={result.id}" in line]
    finally:
        worker.close()
    assert [line.rsplit("state=", 1)[1] for line in lines] == ["RUNNING", "SUCCESSFUL"]
    assert all(f" INFO {TASKS_LOGGER} [" in line for line in lines)


async def test_drain_runs_tasks_of_a_project_without_an_asgi_application(
    tasks_only: None,
) -> None:
    result = await multiply.aenqueue(3, 4)
    stats = await drain(["tasks.default"])
    done = await multiply.aget_result(result.id)
    assert stats.completed == 1
    assert done.return_value == 12


def test_an_application_is_still_needed_for_other_channels(tasks_only: None) -> None:
    with pytest.raises(
        ConfigurationError,
        match=re.escape("No ASGI application for channel(s) 'thumbnails': set ASGI_APPLICATION"),
    ):
        load_application(None, ["tasks.default", "thumbnails"])


def test_send_checks_task_queues_without_reading_an_asgi_application(tasks_only: None) -> None:
    message = {"type": "task.run", "task_id": "by-hand"}
    send("tasks.default", message)
    with pytest.raises(UnknownChannel, match="No TASKS backend declares queue 'emails'"):
        send("tasks.emails", message)
