"""Tasks you can see: task paths in logs, metrics and dead letters; ``channel-worker tasks``;
retrying results; progress kept with the task."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

from tests.redis_server import free_port
from tests.routing.asgi_fakes import Communicator
from tests.worker.process_helpers import (
    REPO_ROOT,
    WorkerProcess,
    runworker_command,
    wait_until,
    worker_env,
)
from tests.worker.send_project import SETTINGS_MODULE, project_settings
from tests.worker.tasks_project.tasks import add, async_add, async_resize, fail, resize, slow
from tests.worker.test_metrics import scrape_until
from worker.cli.channel_worker import main
from worker.config import ChannelConfig
from worker.constants import RECENT_TASK_RESULTS_PER_HOST
from worker.consume.delivery import message_label
from worker.tasks.compat import Task, TaskResultStatus, task_backends
from worker.tasks.progress import PROGRESS_TYPE, REPORTED_AT_KEY, Progress
from worker.tasks.results import changed, from_record, raw_return_value, set_return_value
from worker.testing.drain import drain_sync
from worker.transport.dead_letters import DeadLetter, DeadLetters
from worker.transport.keys import (
    ChannelKeys,
    task_progress_key,
    task_recent_key,
    task_result_key,
)

pytestmark = pytest.mark.redis

ADD = "tests.worker.tasks_project.tasks.add"
FAIL = "tests.worker.tasks_project.tasks.fail"
RESIZE = "tests.worker.tasks_project.tasks.resize"
# The first attempt fails, the retry waits exactly a minute: long enough to be seen waiting.
RETRY_LATER = ChannelConfig(max_attempts=3, retry_backoff_min_s=60, retry_backoff_max_s=60)


@pytest.fixture
def on_redis(redis_url: str) -> Iterator[redis.Redis]:
    with project_settings(redis_url), redis.Redis.from_url(redis_url) as client:
        yield client


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``channel-worker ARGS`` in this process, on the settings in force; (code, out, err)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def dead_letters(layer: RedisChannelLayer, channel: str) -> list[DeadLetter]:
    async def read() -> list[DeadLetter]:
        store = DeadLetters(layer)
        try:
            return await store.list(channel)
        finally:
            await store.aclose()

    return asyncio.run(read())


# The task's path names it in metrics, logs and dead letters


@pytest.mark.e2e
def test_the_task_path_names_a_task_in_metrics_logs_and_dead_letters(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    env = worker_env({"address": redis_url}) | {"DJANGO_SETTINGS_MODULE": SETTINGS_MODULE}
    command = runworker_command("tasks.default", "--metrics-port", str(port))
    worker = WorkerProcess(command, env, REPO_ROOT)
    try:
        worker.wait_for_line(r"Serving Prometheus metrics on http://127\.0\.0\.1:\d+/metrics")
        with project_settings(redis_url):
            add.enqueue(1, 2)
            failed = fail.enqueue("disk full")
            layer = get_channel_layer()
            assert isinstance(layer, RedisChannelLayer)
            [letter] = wait_until(
                lambda: dead_letters(layer, "tasks.default"), "the dead letter", log=worker
            )
            code, listing, _ = cli(capsys, "dead", "list", "tasks.default")
        labels = {"channel": "tasks.default"}
        metrics = scrape_until(
            port,
            [
                ("channel_worker_messages_completed_total", labels | {"type": ADD}, 1),
                ("channel_worker_messages_retried_total", labels | {"type": FAIL}, 1),
                ("channel_worker_messages_dead_lettered_total", labels | {"type": FAIL}, 1),
            ],
            worker,
        )
        worker.wait_for_line(
            rf"Handler for '{re.escape(FAIL)}' on channel 'tasks\.default' failed, attempt 1,"
        )
        worker.wait_for_line(rf"Dead-lettered '{re.escape(FAIL)}' on channel 'tasks\.default'")
    finally:
        worker.close()
    types = {
        labels["type"] for labels in metrics.labelled("channel_worker_messages_received_total")
    }
    assert types == {ADD, FAIL}
    assert "'task.run'" not in worker.output
    assert letter.message_type == FAIL
    assert letter.message_id == failed.id
    assert code == 0
    assert f"{FAIL}  " in listing


def test_a_message_of_another_type_keeps_its_type_as_label(on_redis: redis.Redis) -> None:
    # A "task" key means nothing outside a task message.
    assert message_label({"type": "thumbnails.generate", "task": "x.y"}) == "thumbnails.generate"
    assert message_label({"type": "task.run", "task": ADD}) == ADD
    assert message_label({"type": "task.run"}) == "task.run"
    assert message_label({"type": 3}) is None


# A retrying task


def test_a_task_waiting_for_its_retry_shows_as_retrying_with_the_next_attempt_time(
    on_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    result = fail.enqueue("disk full")
    stats = drain_sync(["tasks.default"], config=RETRY_LATER, delayed_within_s=0)
    assert stats.retried == 1
    # Django's API still reads READY: django.tasks has no retrying status.
    stored = fail.get_result(result.id)
    assert stored.status == TaskResultStatus.READY
    assert [error.exception_class for error in stored.errors] == [ValueError]
    delayed = ChannelKeys.for_channel("asgi", "tasks.default").delayed
    scheduled: Any = on_redis.zrange(delayed, 0, -1, withscores=True)
    [(_, due_at)] = scheduled

    code, out, _ = cli(capsys, "tasks", "show", result.id, "--json")
    record = json.loads(out)
    assert code == 0
    assert record["shown_status"] == "RETRYING"
    assert record["status"] == "READY"
    assert (record["attempt"], record["max_attempts"]) == (1, 3)
    next_at = datetime.fromisoformat(record["next_attempt_at"]).timestamp()
    # The time the worker scheduled, not a guess: both come from one choice of delay.
    assert abs(next_at - float(due_at)) < 1.0

    code, out, _ = cli(capsys, "tasks", "show", result.id)
    shown = datetime.fromisoformat(record["next_attempt_at"]).isoformat(timespec="seconds")
    assert f"retrying, attempt 2 of 3 at {shown}" in out
    assert "error 1 of 1: builtins.ValueError" in out
    assert "ValueError: boom: disk full" in out
    assert 'raise ValueError(f"boom: {reason}")' in out

    code, out, _ = cli(capsys, "tasks", "list", "--status", "retrying")
    assert result.id in out
    assert "RETRYING" in out


# A first attempt runs from its message; a run of it given back at shutdown is not forgotten

GONE_WORKER = "gone-host:1:0a1b2c3d"
EARLIER_START = "2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("task_function", "args"),
    [(add, (2, 3)), (async_add, (2, 3)), (slow, (0.05,))],
    ids=["sync", "async", "sync-past-running-threshold"],
)
def test_a_run_given_back_at_shutdown_keeps_its_start_and_worker_in_the_result(
    on_redis: redis.Redis, task_function: Task[..., Any], args: tuple[Any, ...]
) -> None:
    # A worker stopping mid-run stores READY with the run's start and its id, and gives the
    # message back uncounted: the next run is attempt 1 again.
    result = task_function.enqueue(*args)
    key = task_result_key("asgi", result.id)
    record = json.loads(on_redis.get(key) or b"{}")
    left = {"started_at": EARLIER_START, "last_attempted_at": EARLIER_START}
    on_redis.set(key, json.dumps(record | left | {"worker_ids": [GONE_WORKER]}), keepttl=True)

    stats = drain_sync(["tasks.default"])

    assert stats.completed == 1
    done = task_function.get_result(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.started_at == datetime.fromisoformat(EARLIER_START)
    assert done.last_attempted_at is not None
    assert done.last_attempted_at > done.started_at
    assert done.worker_ids[0] == GONE_WORKER
    assert len(done.worker_ids) == 2


# tasks show and tasks list


def test_tasks_show_prints_a_finished_result_with_its_progress(
    on_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    result = resize.enqueue([64, 128])
    drain_sync(["tasks.default"])
    code, out, _ = cli(capsys, "tasks", "show", result.id)
    assert code == 0
    lines = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert lines["task"] == RESIZE
    assert lines["status"] == "SUCCESSFUL (attempt 1 of 1)"
    assert lines["return_value"] == "2"
    assert lines["args"] == "[[64, 128]]"
    assert lines["worker_ids"] == f"{socket.gethostname()}:{os.getpid()}"
    assert lines["progress"].startswith("2 of 2: 128 px (reported 20")
    for key in ("enqueued_at", "started_at", "finished_at"):
        assert lines[key] != "-"


def test_tasks_show_of_an_unknown_id_says_so(
    on_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "tasks", "show", "nope")
    assert code == 1
    assert "No result 'nope' on backend 'default'" in err


def test_tasks_output_escapes_control_characters(
    on_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    result = fail.using(queue_name="other").enqueue("\x1b]0;owned\x07\u202e")
    _, out, _ = cli(capsys, "tasks", "show", result.id)
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert '["\\u001b]0;owned\\u0007\\u202e"]' in out
    _, out, _ = cli(capsys, "tasks", "list")
    assert "\x1b" not in out


def test_tasks_list_shows_the_newest_first_with_filters_and_a_limit(
    on_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    done = add.enqueue(1, 1)
    drain_sync(["tasks.default"])
    waiting = [add.enqueue(n, n) for n in range(3)]
    other = add.using(queue_name="other").enqueue(5, 5)

    code, out, _ = cli(capsys, "tasks", "list", "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [record["id"] for record in listed] == [
        other.id,
        *[result.id for result in reversed(waiting)],
        done.id,
    ]
    assert [record["shown_status"] for record in listed] == ["READY"] * 4 + ["SUCCESSFUL"]

    code, out, _ = cli(capsys, "tasks", "list", "--status", "SUCCESSFUL", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [done.id]
    code, out, _ = cli(capsys, "tasks", "list", "--queue", "other", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [other.id]
    code, out, _ = cli(capsys, "tasks", "list", "--limit", "2", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [other.id, waiting[-1].id]

    code, out, _ = cli(capsys, "tasks", "list")
    [heading, *rows] = out.splitlines()
    assert heading.split() == ["ID", "STATUS", "QUEUE", "TRY", "ENQUEUED", "AT", "TASK"]
    assert rows[-1].split()[:3] == [done.id, "SUCCESSFUL", "default"]
    assert rows[-1].split()[-1] == ADD

    code, out, _ = cli(capsys, "tasks", "list", "--status", "FAILED")
    assert out == "No results on backend 'default' with status FAILED.\n"


def test_tasks_list_keeps_a_bounded_index_that_expires_with_the_results(
    on_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = task_backends["default"]
    first = add.enqueue(0, 0)
    store: Any = backend.store  # type: ignore[attr-defined]
    template = from_record(store.load_sync(first.id))
    ids = [f"r{n:05}" for n in range(RECENT_TASK_RESULTS_PER_HOST + 5)]
    for result_id in ids:
        store.save_sync(dataclasses.replace(template, id=result_id))
    recent = task_recent_key("asgi")
    assert on_redis.zcard(recent) == RECENT_TASK_RESULTS_PER_HOST
    ttl: Any = on_redis.ttl(recent)
    assert 590 < ttl <= 600  # RESULT_TTL_S of the test project
    limit = str(RECENT_TASK_RESULTS_PER_HOST)
    _, out, _ = cli(capsys, "tasks", "list", "--limit", limit, "--json")
    listed = [json.loads(line)["id"] for line in out.splitlines()]
    assert listed == list(reversed(ids))[:RECENT_TASK_RESULTS_PER_HOST]
    assert first.id not in listed

    # A result that expired is not listed, though the index still names it.
    on_redis.delete(task_result_key("asgi", ids[-1]))
    _, out, _ = cli(capsys, "tasks", "list", "--limit", "1", "--json")
    assert json.loads(out)["id"] == ids[-2]

    with pytest.raises(SystemExit):
        main(["tasks", "list", "--limit", str(RECENT_TASK_RESULTS_PER_HOST + 1)])
    err = capsys.readouterr().err
    assert f"is not a number of results from 1 to {RECENT_TASK_RESULTS_PER_HOST}" in err
    with pytest.raises(SystemExit):
        main(["tasks", "list", "--status", "done"])
    assert "invalid choice: 'DONE'" in capsys.readouterr().err


# Progress kept with the task


@pytest.mark.parametrize("task", [resize, async_resize], ids=["sync", "async"])
def test_progress_is_kept_with_the_task_and_read_after_the_fact(
    on_redis: redis.Redis, task: Any
) -> None:
    result = task.enqueue([64, 128])
    assert Progress.last(result.id) is None
    before = time.time()
    drain_sync(["tasks.default"])
    # A page that loads now, after every report was sent, still sees the last one.
    last = Progress.last(result.id)
    assert last is not None
    reported_at = datetime.fromisoformat(last.pop(REPORTED_AT_KEY)).timestamp()
    assert before <= reported_at <= time.time()
    assert last == {
        "type": PROGRESS_TYPE,
        "done": 2,
        "total": 2,
        "detail": "128 px",
        "task_id": result.id,
    }
    # As long as the result: the final save renewed both.
    result_ttl: Any = on_redis.ttl(task_result_key("asgi", result.id))
    progress_ttl: Any = on_redis.ttl(task_progress_key("asgi", result.id))
    assert abs(result_ttl - progress_ttl) <= 1
    assert asyncio.run(Progress.alast(result.id)) == last | {REPORTED_AT_KEY: last_at(result.id)}


def last_at(task_id: str) -> str:
    report = Progress.last(task_id)
    assert report is not None
    value: str = report[REPORTED_AT_KEY]
    return value


def test_progress_of_a_task_without_a_result_is_not_kept(on_redis: redis.Redis) -> None:
    Progress.for_task("gone").report(1, 2)
    assert Progress.last("gone") is None
    assert on_redis.exists(task_progress_key("asgi", "gone")) == 0


class ProgressConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """The consumer of docs/tasks.md: the last report on connect, then each one live."""

    async def connect(self) -> None:
        task_id = self.scope["url_route"]["kwargs"]["task_id"]
        self.group = Progress.for_task(task_id).group
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        last = await Progress.alast(task_id)
        if last is not None:
            await self.send_json(last)

    async def task_progress(self, event: dict[str, Any]) -> None:
        await self.send_json(event)


async def test_a_websocket_that_connects_after_the_reports_gets_the_last_one(
    redis_url: str,
) -> None:
    with project_settings(redis_url):
        result = await resize.aenqueue([64, 128])
        await asyncio.to_thread(drain_sync, ["tasks.default"])
        scope: dict[str, Any] = {
            "type": "websocket",
            "path": f"/ws/tasks/{result.id}/",
            "headers": [],
            "subprotocols": [],
            "url_route": {"args": (), "kwargs": {"task_id": result.id}},
        }
        page = Communicator(ProgressConsumer.as_asgi(), scope)
        await page.send_input({"type": "websocket.connect"})
        assert await page.receive_output(10) == {"type": "websocket.accept", "subprotocol": None}
        sent = await page.receive_output(10)
        await page.send_input({"type": "websocket.disconnect", "code": 1000})
        await page.wait(10)
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        await layer.close_pools()
    assert sent["type"] == "websocket.send"
    report = json.loads(sent["text"])
    assert (report["type"], report["done"], report["detail"]) == (PROGRESS_TYPE, 2, "128 px")
    assert report["task_id"] == result.id
    assert REPORTED_AT_KEY in report


# Copies of a result as its task changes state


def test_a_changed_copy_equals_what_dataclasses_replace_gives_with_the_return_value(
    on_redis: redis.Redis,
) -> None:
    result = add.enqueue(2, 3)
    set_return_value(result, {"sum": 5})
    now = datetime.now().astimezone()
    changes: dict[str, Any] = {
        "status": TaskResultStatus.SUCCESSFUL,
        "finished_at": now,
        "worker_ids": ["w1"],
    }

    copy = changed(result, **changes)
    expected = dataclasses.replace(result, **changes)
    set_return_value(expected, raw_return_value(result))

    assert copy == expected
    assert copy.return_value == {"sum": 5}
    assert result.status == TaskResultStatus.READY  # the original is left as it was


@pytest.mark.parametrize("name", ["stauts", "args", "_return_value"])
def test_a_changed_copy_refuses_what_it_cannot_set(on_redis: redis.Redis, name: str) -> None:
    result = add.enqueue(2, 3)

    with pytest.raises(TypeError, match=f"cannot set {name}; it sets .*status"):
        changed(result, **{name: "x"})
