"""The ``django.tasks`` backend on the channel layer: enqueue, run in the worker, read results."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.utils import timezone

from tests.redis_server import RedisServer
from tests.worker.process_helpers import WorkerProcess, wait_until
from tests.worker.send_project import project_settings, start_runworker
from tests.worker.tasks_project import settings as project
from tests.worker.tasks_project.tasks import add, async_add, async_resize, fail, flaky, resize
from worker.errors import ChannelAtCapacity
from worker.sending.api import send
from worker.tasks.backend import ChannelLayerBackend
from worker.tasks.compat import (
    TASKS_LOGGER,
    InvalidTask,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from worker.tasks.progress import PROGRESS_TYPE, progress_group
from worker.tasks.running import RUNNING_AFTER_S
from worker.testing.drain import drain
from worker.transport.dead_letters import DeadLetters
from worker.transport.keys import ChannelKeys, task_recent_key, task_result_key

pytestmark = pytest.mark.redis

TASKS_KEY = "asgitasks.default"


def task_message(client: redis.Redis, key: str = TASKS_KEY) -> dict[str, Any]:
    members: list[bytes] = client.zrange(key, 0, -1)  # type: ignore[assignment]
    assert len(members) == 1
    message: dict[str, Any] = RedisChannelLayer().deserialize(members[0])
    return message


@pytest.fixture
def on_redis(redis_url: str) -> Iterator[redis.Redis]:
    with project_settings(redis_url), redis.Redis.from_url(redis_url) as client:
        yield client


# In runworker


@pytest.fixture(scope="module")
def tasks_redis() -> Iterator[str]:
    """A redis-server of this module's worker, which other tests' flushes never touch."""
    server = RedisServer()
    server.start()
    yield server.url
    server.cleanup()


@pytest.fixture(scope="module")
def tasks_worker(tasks_redis: str) -> Iterator[WorkerProcess]:
    """``runworker tasks.default tasks.other``: the project's router lists neither."""
    worker = start_runworker(tasks_redis, "tasks.default", "tasks.other")
    try:
        yield worker
        worker.send_signal(signal.SIGTERM)
        assert worker.wait_exit() == 0
    finally:
        worker.close()


@pytest.fixture
def in_runworker(tasks_redis: str, tasks_worker: WorkerProcess) -> Iterator[WorkerProcess]:
    with project_settings(tasks_redis):
        yield tasks_worker


def finished(
    get: Callable[[], TaskResult[..., Any]], worker: WorkerProcess
) -> TaskResult[..., Any]:
    """Poll a result until the worker has finished with it."""

    def done() -> TaskResult[..., Any] | None:
        result = get()
        return result if result.is_finished else None

    found = wait_until(done, "a finished result", log=worker)
    assert found is not None
    return found


@pytest.mark.e2e
def test_task_enqueued_from_sync_code_runs_in_runworker(in_runworker: WorkerProcess) -> None:
    result = add.enqueue(2, 3)
    done = finished(lambda: add.get_result(result.id), in_runworker)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == 5
    assert done.args == [2, 3]
    assert done.attempts == 1
    assert done.worker_ids == [f"{socket.gethostname()}:{in_runworker.pid}"]
    assert done.errors == []
    assert done.enqueued_at is not None
    assert done.started_at is not None
    assert done.finished_at is not None
    assert done.enqueued_at <= done.started_at <= done.finished_at
    # The object enqueue() returned catches up with refresh().
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5


@pytest.mark.e2e
async def test_task_enqueued_from_async_code_runs_async_functions(
    in_runworker: WorkerProcess,
) -> None:
    result = await async_add.aenqueue(4, 5)
    deadline = time.monotonic() + 20
    while not (done := await async_add.aget_result(result.id)).is_finished:
        assert time.monotonic() < deadline, in_runworker.output
        await asyncio.sleep(0.05)
    assert done.status == TaskResultStatus.SUCCESSFUL
    # The stubs type an async task's value as its coroutine; the result holds what it returned.
    value: Any = done.return_value
    assert value == 9
    await result.arefresh()
    refreshed: Any = result.return_value
    assert refreshed == 9


@pytest.mark.e2e
def test_failing_task_is_retried_then_failed_with_each_traceback(
    in_runworker: WorkerProcess, tasks_redis: str
) -> None:
    result = fail.enqueue("disk full")
    done = finished(lambda: fail.get_result(result.id), in_runworker)
    assert done.status == TaskResultStatus.FAILED
    # CHANNEL_WORKER gives tasks.default two attempts.
    assert done.attempts == 2
    assert len(done.errors) == 2
    error = done.errors[-1]
    assert error.exception_class is ValueError
    assert "ValueError: boom: disk full" in error.traceback
    assert 'raise ValueError(f"boom: {reason}")' in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = done.return_value
    # The worker's dead letters keep the message, as for any consumer; the result is stored
    # before the failure reaches the worker, so the dead letter may follow a moment later.
    layer = RedisChannelLayer(hosts=[tasks_redis])

    def letters() -> list[Any]:
        async def read() -> list[Any]:
            dead = DeadLetters(layer)
            try:
                return await dead.list("tasks.default")
            finally:
                await dead.aclose()

        return [item for item in asyncio.run(read()) if item.message_id == result.id]

    [letter] = wait_until(letters, "the task's dead letter", log=in_runworker)
    assert letter.error_type == "ValueError"
    assert letter.attempts == 2


@pytest.mark.e2e
def test_task_context_attempt_is_the_delivery_attempt(in_runworker: WorkerProcess) -> None:
    result = flaky.enqueue(1)
    done = finished(lambda: flaky.get_result(result.id), in_runworker)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == {"attempt": 2, "id": result.id}
    assert [error.exception_class for error in done.errors] == [RuntimeError]
    assert done.attempts == 2


@pytest.mark.e2e
def test_task_for_another_queue_runs_on_its_own_channel(in_runworker: WorkerProcess) -> None:
    result = add.using(queue_name="other").enqueue(1, 1)
    done = finished(lambda: add.get_result(result.id), in_runworker)
    assert done.return_value == 2
    assert done.task.queue_name == "other"


# Enqueueing and results


def test_enqueue_stores_a_ready_result_then_sends_the_message(on_redis: redis.Redis) -> None:
    result = add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    stored = add.get_result(result.id)
    assert stored.status == TaskResultStatus.READY
    assert stored.args == [2, 3]
    assert stored.enqueued_at == result.enqueued_at
    message = task_message(on_redis)
    assert message["type"] == "task.run"
    assert message["task_id"] == result.id
    assert message["task"] == "tests.worker.tasks_project.tasks.add"
    assert message["args"] == [2, 3]
    ttl: Any = on_redis.ttl(task_result_key("asgi", result.id))
    assert 590 < ttl <= 600


def test_backend_declares_what_it_supports(on_redis: redis.Redis) -> None:
    backend = task_backends["default"]
    assert isinstance(backend, ChannelLayerBackend)
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_defer
    assert backend.supports_priority


def test_queue_names_must_name_valid_channels(redis_url: str) -> None:
    with (
        override_settings(TASKS={"default": {**project.tasks()["default"], "QUEUES": ["a b"]}}),
        pytest.raises(
            ImproperlyConfigured,
            match=r"TASKS\['default'\]\['QUEUES'\]: Queue name 'a b' cannot name the task "
            r"channel 'tasks\.a b': the channel takes ASCII letters, digits, hyphens, "
            r"underscores and periods, shorter than 100 characters, so a queue name takes at "
            r"most 93 of them, e\.g\. 'default'",
        ),
    ):
        task_backends["default"]


def test_any_queue_name_is_checked_when_queues_are_not_listed(redis_url: str) -> None:
    with override_settings(TASKS={"default": {**project.tasks()["default"], "QUEUES": []}}):
        add.using(queue_name="reports")
        with pytest.raises(InvalidTask, match=r"Queue name 'a!b' cannot name the task channel"):
            add.using(queue_name="a!b")


def test_unknown_backend_options_are_refused(redis_url: str) -> None:
    with (
        project_settings(redis_url, tasks={"LAYERS": "default"}),
        pytest.raises(
            ImproperlyConfigured,
            match=r"TASKS\['default'\]\['OPTIONS'\] has unknown key\(s\) 'LAYERS'; known "
            r"keys: 'LAYER', 'RESULT_TTL_S'",
        ),
    ):
        task_backends["default"]


def test_a_layer_the_worker_cannot_serve_fails_the_system_check(redis_url: str) -> None:
    with override_settings(
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
        TASKS=project.tasks(),
    ):
        [error] = task_backends["default"].check()
    assert error.id == "channel_worker.E001"
    assert "InMemoryChannelLayer" in error.msg


def test_get_result_of_an_unknown_id_raises(on_redis: redis.Redis) -> None:
    with pytest.raises(TaskResultDoesNotExist, match=r"No result 'nope' on backend 'default'"):
        add.get_result("nope")


def test_a_failed_send_leaves_no_result_behind(redis_url: str) -> None:
    with project_settings(redis_url, layer={"channel_capacity": {"tasks.default": 1}}):
        add.enqueue(1, 1)
        with pytest.raises(ChannelAtCapacity, match=r"'tasks\.default' is full"):
            add.enqueue(2, 2)
        with redis.Redis.from_url(redis_url) as client:
            results: list[bytes] = client.keys("*task-result:*")
    assert len(results) == 1


@pytest.mark.parametrize("run_after_s", [None, 60], ids=["now", "deferred"])
def test_a_key_of_the_wrong_type_refuses_the_enqueue_with_its_name_and_writes_nothing(
    on_redis: redis.Redis, run_after_s: int | None
) -> None:
    recent = task_recent_key(RedisChannelLayer().prefix)
    on_redis.set(recent, "not the sorted set of recent results")
    task = add.using(run_after=timezone.now() + timedelta(seconds=run_after_s or 0))

    with pytest.raises(redis.ResponseError, match=rf"WRONGTYPE key {recent} holds a string"):
        (task if run_after_s else add).enqueue(1, 2)

    assert on_redis.keys("*task-result:*") == []
    assert on_redis.keys("*tasks.default*") == []


# Running in the testing aid: the worker's real path, in this process


async def test_deferred_task_waits_for_run_after(redis_url: str) -> None:
    with project_settings(redis_url):
        run_after = timezone.now() + timedelta(seconds=1)
        result = await add.using(run_after=run_after).aenqueue(1, 2)
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        delayed = ChannelKeys.for_channel("asgi", "tasks.default").delayed
        assert await layer.connection(0).zcard(delayed) == 1
        assert await layer.connection(0).zcard(TASKS_KEY) == 0
        early = await drain(["tasks.default"], delayed_within_s=0)
        assert early.received == 0
        assert (await add.aget_result(result.id)).status == TaskResultStatus.READY
        stats = await drain(["tasks.default"])
        done = await add.aget_result(result.id)
        await layer.close_pools()
    assert stats.completed == 1
    assert done.return_value == 3
    assert done.started_at is not None
    assert done.started_at >= run_after
    assert done.task.run_after == run_after


# Receivers of either kind: the worker and aenqueue() take another path when one is async.
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_task_signals_are_sent_with_each_status(redis_url: str, kind: str) -> None:
    seen: list[tuple[str, str]] = []

    def receiver(name: str) -> Callable[..., Any]:
        def record(sender: type, task_result: TaskResult[..., Any], **kwargs: Any) -> None:
            assert sender is ChannelLayerBackend
            seen.append((name, str(task_result.status)))

        async def arecord(sender: type, task_result: TaskResult[..., Any], **kwargs: Any) -> None:
            record(sender, task_result)

        return record if kind == "sync" else arecord

    receivers = {
        task_enqueued: receiver("enqueued"),
        task_started: receiver("started"),
        task_finished: receiver("finished"),
    }
    for signal_, function in receivers.items():
        signal_.connect(function, weak=False)
    try:
        with project_settings(redis_url, worker={}):
            await asyncio.to_thread(add.enqueue, 1, 1)
            await async_add.aenqueue(1, 1)
            await asyncio.to_thread(fail.enqueue, "x")
            stats = await drain(["tasks.default"])
    finally:
        for signal_, function in receivers.items():
            signal_.disconnect(function)
    assert stats.completed == 2
    assert stats.failed == 1
    assert sorted(seen) == sorted(
        [("enqueued", "READY")] * 3
        + [("started", "RUNNING")] * 3
        + [("finished", "SUCCESSFUL")] * 2
        + [("finished", "FAILED")]
    )


async def test_async_tasks_send_a_projects_sync_receivers_from_a_thread(redis_url: str) -> None:
    # A project's sync receiver may block or use the database: never on the worker's loop.
    threads: list[tuple[str, int, bool]] = []

    def record(sender: type, task_result: TaskResult[..., Any], **kwargs: Any) -> None:
        try:
            asyncio.get_running_loop()
            on_a_loop = True
        except RuntimeError:
            on_a_loop = False
        threads.append((str(task_result.status), threading.get_ident(), on_a_loop))

    for signal_ in (task_started, task_finished):
        signal_.connect(record, weak=False)
    try:
        with project_settings(redis_url, worker={}):
            await async_add.aenqueue(1, 1)
            stats = await drain(["tasks.default"])
    finally:
        for signal_ in (task_started, task_finished):
            signal_.disconnect(record)
    assert stats.completed == 1
    assert [(status, on_a_loop) for status, _, on_a_loop in threads] == [
        ("RUNNING", False),
        ("SUCCESSFUL", False),
    ]
    assert all(thread != threading.get_ident() for _, thread, _ in threads)


async def test_a_task_whose_started_receiver_raises_is_never_shown_running(redis_url: str) -> None:
    def refuse(sender: type, task_result: TaskResult[..., Any], **kwargs: Any) -> None:
        raise RuntimeError("monitor is down")

    task_started.connect(refuse, weak=False)
    try:
        with project_settings(redis_url, worker={}):
            result = await async_add.aenqueue(1, 1)
            stats = await drain(["tasks.default"])
            # 20 times the RUNNING threshold: a mark left looking would have written by then.
            deadline = time.monotonic() + RUNNING_AFTER_S * 20
            while time.monotonic() < deadline:
                assert (await async_add.aget_result(result.id)).status == TaskResultStatus.READY
                await asyncio.sleep(RUNNING_AFTER_S)
    finally:
        task_started.disconnect(refuse)
    assert stats.failed == 1


async def test_async_tasks_log_each_state_once_from_the_loop(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Django's own receivers only log: they run where the task runs, with no hop to a thread.
    with project_settings(redis_url, worker={}), caplog.at_level("INFO", TASKS_LOGGER):
        result = await async_add.aenqueue(1, 1)
        await drain(["tasks.default"])
    lines = [
        (record.getMessage().rsplit("state=", 1)[1], record.thread)
        for record in caplog.records
        if record.name == TASKS_LOGGER and f"id={result.id}" in record.getMessage()
    ]
    loop_thread = threading.get_ident()
    assert lines == [("RUNNING", loop_thread), ("SUCCESSFUL", loop_thread)]


async def test_a_failed_sync_task_is_logged_with_its_traceback(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with project_settings(redis_url, worker={}), caplog.at_level("INFO", TASKS_LOGGER):
        result = await fail.aenqueue("no thumbnail")
        await drain(["tasks.default"])
    [failed] = [
        record
        for record in caplog.records
        if record.name == TASKS_LOGGER
        and f"id={result.id}" in record.getMessage()
        and "state=FAILED" in record.getMessage()
    ]
    assert failed.levelname == "ERROR"
    assert failed.exc_info is not None
    assert str(failed.exc_info[1]) == "boom: no thumbnail"


@pytest.mark.parametrize("task", [resize, async_resize], ids=["sync", "async"])
async def test_task_reports_progress_to_its_group(redis_url: str, task: Any) -> None:
    with project_settings(redis_url):
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        result = await task.aenqueue([64, 128])
        # What a websocket consumer would do on connect.
        listener = await layer.new_channel()
        await layer.group_add(progress_group(result.id), listener)
        await drain(["tasks.default"])
        updates = [await asyncio.wait_for(layer.receive(listener), 10) for _ in range(2)]
        await layer.close_pools()
    assert updates == [
        {
            "type": PROGRESS_TYPE,
            "done": done,
            "total": 2,
            "detail": f"{size} px",
            "task_id": result.id,
        }
        for done, size in ((1, 64), (2, 128))
    ]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"type": "thumbnails.generate"}, "task channels carry 'task.run' messages"),
        ({"type": "task.run", "task": "x"}, "lacks 'task_id', 'backend', 'queue_name'"),
    ],
    ids=["other-type", "incomplete"],
)
async def test_other_messages_on_a_task_channel_are_dead_lettered(
    redis_url: str, message: dict[str, Any], reason: str
) -> None:
    with project_settings(redis_url):
        await asyncio.to_thread(send, "tasks.default", message)
        stats = await drain(["tasks.default"])
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        dead = DeadLetters(layer)
        [letter] = await dead.list("tasks.default")
        await dead.aclose()
    assert stats.failed == 1
    assert letter.error is not None
    assert reason in letter.error
