"""The sync tasks' thread pool: ``--task-threads``, ``task_threads``, concurrency by default."""

from __future__ import annotations

import json
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
from tests.worker.tasks_only_project.thread_tasks import BARRIER_PARTIES_ENV, meet
from worker.cli.options import CHANNEL_FLAGS, WorkerOptions
from worker.config import ChannelConfig, channel_configs
from worker.constants import DEFAULT_CONCURRENCY
from worker.errors import ConfigurationError
from worker.tasks.compat import TaskResultStatus

SETTINGS_MODULE = "tests.worker.tasks_only_project.threads_settings"
# Long enough for a loaded machine to start every task; a pool too small never gets there.
BARRIER_TIMEOUT_S = 15.0


def meet_all(
    redis_url: str, parties: int, flags: list[str], channel_worker: dict[str, Any] | None = None
) -> list[str]:
    """Run ``parties`` barrier tasks on a worker with ``flags``; the statuses they end with."""
    env = worker_env({"address": redis_url}) | {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        BARRIER_PARTIES_ENV: str(parties),
        "CW_TEST_CHANNEL_WORKER": json.dumps(channel_worker or {}),
    }
    results = [meet.enqueue(BARRIER_TIMEOUT_S) for _ in range(parties)]
    worker = WorkerProcess(runworker_command("tasks.default", *flags), env, REPO_ROOT)
    try:

        def statuses() -> list[str]:
            found = [meet.get_result(result.id) for result in results]
            done = all(result.is_finished for result in found)
            return [str(result.status) for result in found] if done else []

        ended = wait_until(
            statuses, "every barrier task to finish", timeout_s=BARRIER_TIMEOUT_S + 20, log=worker
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output
        return ended
    finally:
        worker.close()


@pytest.mark.e2e
@pytest.mark.redis
def test_task_threads_flag_runs_that_many_sync_tasks_at_once(
    redis_url: str, tasks_only: None
) -> None:
    # More than the event loop's default executor has on a small machine (min(32, CPUs + 4)).
    statuses = meet_all(redis_url, 12, ["--concurrency", "12", "--task-threads", "12"])
    assert statuses == [TaskResultStatus.SUCCESSFUL] * 12


@pytest.mark.e2e
@pytest.mark.redis
def test_sync_tasks_get_as_many_threads_as_concurrency_by_default(
    redis_url: str, tasks_only: None
) -> None:
    statuses = meet_all(redis_url, 14, ["--concurrency", "14"])
    assert statuses == [TaskResultStatus.SUCCESSFUL] * 14


@pytest.mark.e2e
@pytest.mark.redis
def test_channel_task_threads_setting_overrides_the_flag(redis_url: str, tasks_only: None) -> None:
    # The flag alone would give 2 threads and break the barrier; the channel's setting wins.
    statuses = meet_all(
        redis_url,
        10,
        ["--concurrency", "10", "--task-threads", "2"],
        {"CHANNELS": {"tasks.default": {"task_threads": 10}}},
    )
    assert statuses == [TaskResultStatus.SUCCESSFUL] * 10


def test_task_threads_default_to_the_concurrency() -> None:
    assert ChannelConfig().task_thread_limit == DEFAULT_CONCURRENCY
    assert ChannelConfig(concurrency=40).task_thread_limit == 40
    assert ChannelConfig(concurrency=40, task_threads=8).task_thread_limit == 8


def test_task_threads_is_a_channel_flag_and_a_channel_worker_key() -> None:
    assert "task_threads" in CHANNEL_FLAGS
    flags = WorkerOptions(task_threads=6).channel_flags()
    settings = {"TASK_THREADS": 3, "CHANNELS": {"tasks.emails": {"task_threads": 9}}}
    configs = channel_configs(["tasks.default", "tasks.emails"], flags, settings)
    assert configs["tasks.default"].task_threads == 6
    assert configs["tasks.emails"].task_threads == 9
    assert channel_configs(["tasks.default"], {}, settings)["tasks.default"].task_threads == 3


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "4"])
def test_task_threads_that_is_not_a_count_is_refused_naming_it(value: object) -> None:
    with pytest.raises(
        ConfigurationError, match=rf"task_threads for channel 'tasks.default' is {value!r}"
    ):
        channel_configs(
            ["tasks.default"], {}, {"CHANNELS": {"tasks.default": {"task_threads": value}}}
        )
