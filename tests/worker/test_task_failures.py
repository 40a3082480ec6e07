"""Tasks that fail before they run: the function no longer imports, the path names no task, the
arguments do not decode. Each is stored FAILED with its error at once, ``task_finished`` fires
once, the message is dead-lettered without retries, and ``get_result()`` still loads it."""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

from tests.worker.process_helpers import wait_until
from tests.worker.send_project import project_settings, start_runworker
from worker.config import ChannelConfig
from worker.sending.api import send
from worker.tasks.compat import (
    InvalidTask,
    Task,
    TaskResult,
    TaskResultStatus,
    task_backends,
    task_finished,
    task_started,
)
from worker.testing.drain import drain
from worker.transport.dead_letters import DeadLetter, DeadLetters
from worker.transport.keys import channel_key, task_result_key

pytestmark = pytest.mark.redis

MODULE = "vanishing_tasks"
PATH = f"{MODULE}.add"
SOURCE = """
from worker.tasks.compat import task


@task()
def add(a, b):
    return a + b
"""
# Three attempts, so a failure that were retried would show in the counters.
RETRYING = ChannelConfig(max_attempts=3, retry_backoff_min_s=0.01, retry_backoff_max_s=0.01)


class Vanishing:
    """A task module in a directory of the test's own, which the test then changes or removes."""

    def __init__(self, directory: Path) -> None:
        self.file = directory / f"{MODULE}.py"

    def task(self) -> Task[..., Any]:
        self.file.write_text(SOURCE)
        task: Task[..., Any] = importlib.import_module(MODULE).add
        return task

    def change(self, source: str | None) -> None:
        """Deploy new code: ``source``, or no module at all."""
        if source is None:
            self.file.unlink()
        else:
            self.file.write_text(source)
        sys.modules.pop(MODULE, None)
        importlib.invalidate_caches()


@pytest.fixture
def vanishing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Vanishing]:
    # No .pyc: a rewrite within the same second must not be answered from a stale cache.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield Vanishing(tmp_path)
    sys.modules.pop(MODULE, None)


@pytest.fixture
def signals() -> Iterator[list[tuple[str, str, str]]]:
    """Each task signal this process sends: (signal, status, result id)."""
    seen: list[tuple[str, str, str]] = []

    def receiver(name: str) -> Callable[..., None]:
        def record(sender: type, task_result: TaskResult[..., Any], **kwargs: Any) -> None:
            seen.append((name, str(task_result.status), task_result.id))

        return record

    receivers = {task_started: receiver("started"), task_finished: receiver("finished")}
    for signal_, function in receivers.items():
        signal_.connect(function, weak=False)
    yield seen
    for signal_, function in receivers.items():
        signal_.disconnect(function)


def get_result(result_id: str) -> TaskResult[..., Any]:
    """The stored result, read through the backend as a page would, with no task at hand."""
    return task_backends["default"].get_result(result_id)


async def dead_letters(layer: RedisChannelLayer) -> list[DeadLetter]:
    dead = DeadLetters(layer)
    try:
        return await dead.list("tasks.default")
    finally:
        await dead.aclose()


def edit_record(redis_url: str, result_id: str, **changes: Any) -> None:
    """Rewrite fields of a stored result, as a record written by another version would read."""
    key = task_result_key("asgi", result_id)
    with redis.Redis.from_url(redis_url) as client:
        raw = client.get(key)
        client.set(key, json.dumps(json.loads(raw) | changes), keepttl=True)


def edit_message(redis_url: str, **changes: Any) -> None:
    """Rewrite fields of the one task message waiting on ``tasks.default``, as another version
    would have sent it (a first attempt runs from its message, not from the stored record)."""
    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    key = channel_key(layer.prefix, "tasks.default")
    with redis.Redis.from_url(redis_url) as client:
        [(member, score)] = client.zrange(key, 0, -1, withscores=True)
        message = layer.deserialize(member) | changes
        with client.pipeline() as pipe:
            pipe.zrem(key, member)
            pipe.zadd(key, {layer.serialize(message): score})
            pipe.execute()


def enqueue_then_change(
    vanishing: Vanishing, redis_url: str, change: str
) -> tuple[str, type[BaseException], str]:
    """Enqueue ``vanishing_tasks.add``, then break it the way ``change`` says.

    Returns the result id, and the error class and message the worker must store.
    """
    add = vanishing.task()
    result_id = add.enqueue(2, 3).id
    if change == "removed":
        vanishing.change(None)
        return result_id, InvalidTask, f"Cannot import task '{PATH}': No module named '{MODULE}'"
    if change == "renamed":
        vanishing.change(SOURCE.replace("def add", "def plus"))
        return result_id, InvalidTask, f"Cannot import task '{PATH}': Module \"{MODULE}\" does not"
    if change == "undecorated":
        vanishing.change(SOURCE.replace("@task()\n", ""))
        return result_id, InvalidTask, f"'{PATH}' is a function, not a task"
    assert change == "args-not-a-list"
    edit_record(redis_url, result_id, args={"a": 2, "b": 3})
    edit_message(redis_url, args={"a": 2, "b": 3})
    return result_id, TypeError, "Task args is a dict, expected a list"


@pytest.mark.parametrize("change", ["removed", "renamed", "undecorated", "args-not-a-list"])
async def test_a_task_that_cannot_start_is_failed_at_once_with_its_error(
    redis_url: str, vanishing: Vanishing, signals: list[tuple[str, str, str]], change: str
) -> None:
    with project_settings(redis_url):
        result_id, error_class, problem = await asyncio.to_thread(
            enqueue_then_change, vanishing, redis_url, change
        )
        stats = await drain(["tasks.default"], config=RETRYING)
        done = await asyncio.to_thread(get_result, result_id)
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        [letter] = await dead_letters(layer)
        await layer.close_pools()
    assert done.status == TaskResultStatus.FAILED
    assert done.task.module_path == PATH
    [error] = done.errors
    assert error.exception_class is error_class
    assert problem in error.traceback
    assert done.attempts == 1
    assert done.started_at is None
    assert done.finished_at is not None
    assert signals == [("finished", "FAILED", result_id)]
    # Dead-lettered at the first attempt, although the channel allows three.
    assert (stats.failed, stats.retried, stats.dead) == (1, 0, 1)
    assert letter.attempts == 1
    assert letter.error_type == "TaskNotRunnable"
    assert letter.error is not None
    assert f"Task '{PATH}' cannot run" in letter.error
    assert problem in letter.error


async def test_arguments_that_do_not_decode_fail_the_task_and_keep_the_message(
    redis_url: str, signals: list[tuple[str, str, str]]
) -> None:
    """A hand-made message whose arguments JSON cannot hold (bytes that are not UTF-8)."""
    message = {
        "type": "task.run",
        "task_id": "raw-bytes",
        "task": "tests.worker.tasks_project.tasks.add",
        "backend": "default",
        "queue_name": "default",
        "priority": 0,
        "args": [b"\xff", 1],
        "kwargs": {},
    }
    with project_settings(redis_url):
        await asyncio.to_thread(send, "tasks.default", message)
        stats = await drain(["tasks.default"], config=RETRYING)
        done = await asyncio.to_thread(get_result, "raw-bytes")
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        [letter] = await dead_letters(layer)
        await layer.close_pools()
    assert done.status == TaskResultStatus.FAILED
    [error] = done.errors
    assert error.exception_class is ValueError
    assert "Unsupported value: <class 'bytes'>" in error.traceback
    # The result cannot hold them; the dead letter keeps the message as it was sent.
    assert (done.args, done.kwargs) == ([], {})
    assert signals == [("finished", "FAILED", "raw-bytes")]
    assert (stats.failed, stats.retried) == (1, 0)
    assert letter.attempts == 1
    assert letter.error is not None
    assert "its arguments do not decode" in letter.error


def test_get_result_of_a_queued_task_whose_function_is_gone(
    redis_url: str, vanishing: Vanishing
) -> None:
    with project_settings(redis_url):
        result_id = vanishing.task().enqueue(1, 2).id
        vanishing.change(None)
        stored = get_result(result_id)
    assert stored.status == TaskResultStatus.READY
    assert stored.task.module_path == PATH
    assert stored.args == [1, 2]
    with pytest.raises(InvalidTask, match=f"Cannot import task '{PATH}'"):
        stored.task.call(1, 2)


@pytest.mark.e2e
def test_get_result_of_a_task_whose_function_the_worker_cannot_import(
    redis_url: str, vanishing: Vanishing
) -> None:
    """The web process has the module, the worker's project does not (another deployment)."""
    worker = start_runworker(redis_url, "tasks.default")
    try:
        with project_settings(redis_url):
            result = vanishing.task().enqueue(2, 3)

            def finished() -> TaskResult[..., Any] | None:
                found = get_result(result.id)
                return found if found.is_finished else None

            done = wait_until(finished, "the task's result to be FAILED", log=worker)
            assert done is not None
            # Gone here too now: the stored result still loads.
            vanishing.change(None)
            result.refresh()
            again = get_result(result.id)
        # At the first attempt, although tasks.default has two.
        worker.wait_for_line(r"Dead-lettered '[^']+' on channel 'tasks\.default' after 1 attempt")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output
    finally:
        worker.close()
    assert done.status == TaskResultStatus.FAILED
    [error] = done.errors
    assert error.exception_class is InvalidTask
    assert f"No module named '{MODULE}'" in error.traceback
    assert done.worker_ids == [f"{socket.gethostname()}:{worker.pid}"]
    assert result.status == again.status == TaskResultStatus.FAILED
    assert again.task.module_path == PATH
