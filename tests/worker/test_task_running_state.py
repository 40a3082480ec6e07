"""RUNNING is stored for a task that runs past ``RUNNING_AFTER_S``, and never after its outcome."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest
import redis

from tests.worker.process_helpers import (
    REPO_ROOT,
    WorkerProcess,
    runworker_command,
    wait_until,
    worker_env,
)
from tests.worker.tasks_only_project.running_tasks import ahold, hold
from worker.tasks.compat import Task, TaskResult, TaskResultStatus
from worker.tasks.running import RUNNING_AFTER_S, RunningMark

SETTINGS_MODULE = "tests.worker.tasks_only_project.settings"
HOLD_TIMEOUT_S = 20.0


def test_the_running_threshold_is_five_milliseconds() -> None:
    # docs/tasks.md promises it: a task running longer than this shows RUNNING.
    assert RUNNING_AFTER_S == 0.005


@pytest.mark.e2e
@pytest.mark.redis
@pytest.mark.parametrize("held", [hold, ahold], ids=["sync", "async"])
def test_a_task_running_past_the_threshold_shows_running_until_its_outcome(
    redis_url: str, tasks_only: None, held: Task[..., bool]
) -> None:
    release_key = f"release-{held.name}"
    result = held.enqueue(release_key, HOLD_TIMEOUT_S)
    env = worker_env({"address": redis_url}) | {"DJANGO_SETTINGS_MODULE": SETTINGS_MODULE}
    worker = WorkerProcess(runworker_command("tasks.default"), env, REPO_ROOT)
    try:

        def status_is(status: str) -> TaskResult[..., bool] | None:
            found = held.get_result(result.id)
            return found if found.status == status else None

        running = wait_until(
            lambda: status_is(TaskResultStatus.RUNNING), "the held task to show RUNNING", log=worker
        )
        assert running is not None
        assert running.started_at is not None
        assert running.finished_at is None
        assert running.worker_ids
        with redis.Redis.from_url(redis_url) as client:
            client.rpush(release_key, "go")
        done = wait_until(
            lambda: status_is(TaskResultStatus.SUCCESSFUL), "the released task to end", log=worker
        )
        assert done is not None
        assert done.return_value is True
        assert done.started_at == running.started_at
        worker.send_signal(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output
    finally:
        worker.close()


@pytest.mark.e2e
@pytest.mark.redis
def test_a_sync_task_waiting_for_a_free_thread_is_not_shown_running(
    redis_url: str, tasks_only: None
) -> None:
    first = hold.enqueue("release-first", HOLD_TIMEOUT_S)
    second = hold.enqueue("release-second", HOLD_TIMEOUT_S)
    env = worker_env({"address": redis_url}) | {"DJANGO_SETTINGS_MODULE": SETTINGS_MODULE}
    command = runworker_command("tasks.default", "--concurrency", "2", "--task-threads", "1")
    worker = WorkerProcess(command, env, REPO_ROOT)
    try:

        def status(result: TaskResult[..., bool]) -> str:
            return str(hold.get_result(result.id).status)

        wait_until(lambda: status(first) == "RUNNING", "the first task to run", log=worker)
        # The second is taken (two instances) but waits for the one thread: 200 times the
        # threshold without a RUNNING state.
        deadline = time.monotonic() + RUNNING_AFTER_S * 200
        while time.monotonic() < deadline:
            assert status(second) == "READY"
        with redis.Redis.from_url(redis_url) as client:
            client.rpush("release-first", "go")
            wait_until(lambda: status(second) == "RUNNING", "the second task to run", log=worker)
            client.rpush("release-second", "go")
        wait_until(lambda: status(second) == "SUCCESSFUL", "the second task to end", log=worker)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output
    finally:
        worker.close()


async def test_an_attempt_that_ends_before_the_threshold_writes_no_running_state() -> None:
    writes: list[str] = []
    mark = RunningMark()
    mark.start(lambda: writes.append("RUNNING"))
    mark.arm()
    await mark.aclose()
    # The clock would have fired by now; the mark was closed, so it must stay silent.
    await asyncio.sleep(RUNNING_AFTER_S * 4)
    assert writes == []


async def test_an_attempt_past_the_threshold_writes_running_once_before_close_returns() -> None:
    writes: list[float] = []
    armed_at = time.monotonic()
    written = threading.Event()

    def write() -> None:
        writes.append(time.monotonic())
        written.set()

    mark = RunningMark()
    mark.start(write)
    mark.arm()
    assert await asyncio.to_thread(written.wait, 5.0)
    await mark.aclose()
    assert len(writes) == 1
    assert writes[0] - armed_at >= RUNNING_AFTER_S


def close_from_a_thread(mark: RunningMark, order: list[object]) -> threading.Thread:
    """Close ``mark`` from a task thread, as before an outcome; the thread must still wait."""

    def outcome() -> None:
        mark.close()
        order.append("outcome")

    thread = threading.Thread(target=outcome)
    thread.start()
    thread.join(0.05)
    assert thread.is_alive(), "close() returned while the RUNNING write was still going on"
    return thread


async def test_close_from_the_task_thread_waits_for_a_running_write_that_has_begun() -> None:
    entered, release = threading.Event(), threading.Event()
    order: list[object] = []

    def write() -> None:
        entered.set()
        release.wait(5.0)
        order.append("RUNNING")

    mark = RunningMark()
    mark.arm()
    # The clock runs while the task's thread is still loading; the write comes later.
    await asyncio.sleep(RUNNING_AFTER_S * 2)
    mark.start(write)
    assert await asyncio.to_thread(entered.wait, 5.0)

    thread = close_from_a_thread(mark, order)
    release.set()
    await asyncio.to_thread(thread.join, 5.0)
    assert order == ["RUNNING", "outcome"]


async def test_a_coroutine_write_runs_on_the_loop_and_close_waits_for_it() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    order: list[object] = []

    async def write() -> None:
        order.append(("RUNNING", threading.get_ident()))
        entered.set()
        await release.wait()

    mark = RunningMark()
    mark.start(write)
    mark.arm()
    await asyncio.wait_for(entered.wait(), 5.0)

    thread = close_from_a_thread(mark, order)
    release.set()
    await asyncio.to_thread(thread.join, 5.0)
    await mark.aclose()
    assert order == [("RUNNING", threading.get_ident()), "outcome"]
