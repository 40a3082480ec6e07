"""``runworker`` logs: ``--log-format json`` lines, and Redis passwords redacted in every format."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import RedisServer
from tests.worker._ops import STARTED, Ops, runworker_command, stop
from tests.worker.ops_project.consumers import OPS_CHANNEL
from tests.worker.process_helpers import WorkerProcess, wait_until
from worker.transport.keys import ChannelKeys

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

KEYS = ChannelKeys.for_channel("asgi", OPS_CHANNEL)
PASSWORD = "s3cret"
JSON_STARTED = rf'"message": "Worker \S+ consuming {OPS_CHANNEL} \(concurrency'
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def ops(redis_url: str, tmp_path: Path) -> Iterator[Ops]:
    harness = Ops(redis_url, tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def password_redis_server() -> Iterator[RedisServer]:
    server = RedisServer(password=PASSWORD)
    server.start()
    yield server
    server.cleanup()


def handle_one_and_fail_one(ops: Ops, worker: WorkerProcess) -> None:
    """Send a message that succeeds and one that fails, and wait for both outcomes."""
    ops.send({"type": "ops.run", "id": "fine"}, {"type": "ops.fail", "id": "bad"})
    wait_until(
        lambda: ops.handled_ids() == ["fine"] and ops.client.zcard(KEYS.dead) == 1,
        "one message handled and one dead-lettered",
        log=worker,
    )


def entries(worker: WorkerProcess) -> list[dict[str, Any]]:
    """Every output line, each of which must be one JSON object."""
    parsed = []
    for line in worker.lines:
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        parsed.append(entry)
    return parsed


def test_json_log_lines_carry_time_level_logger_message_and_the_message_fields(
    ops: Ops,
) -> None:
    worker = ops.start(
        runworker_command("--log-format", "json", "--max-attempts", "1", OPS_CHANNEL)
    )
    worker.wait_for_line(JSON_STARTED)
    handle_one_and_fail_one(ops, worker)
    assert stop(worker) == 0

    logged = entries(worker)
    for entry in logged:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert TIME.fullmatch(entry["time"]), entry
        assert entry["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        assert entry["process"] == worker.pid
    assert logged[-1]["message"].startswith("Worker stopped: received=2 completed=1 failed=1")

    (failure,) = [entry for entry in logged if entry["logger"] == "worker.consume.instance"]
    assert failure["level"] == "ERROR"
    assert failure["message"].startswith(
        f"Handler for 'ops.fail' on channel '{OPS_CHANNEL}' failed, attempt 1, after "
    )
    assert (failure["channel"], failure["message_type"], failure["attempt"]) == (
        OPS_CHANNEL,
        "ops.fail",
        1,
    )
    assert isinstance(failure["duration_ms"], float)
    assert failure["duration_ms"] >= 0
    assert failure["traceback"].startswith("Traceback (most recent call last):")
    assert "in ops_fail" in failure["traceback"]
    assert failure["traceback"].endswith("RuntimeError: message 'bad' fails on demand")

    (dead,) = [entry for entry in logged if entry["message"].startswith("Dead-lettered")]
    assert (dead["logger"], dead["channel"], dead["message_type"], dead["attempt"]) == (
        "worker.consume.settle",
        OPS_CHANNEL,
        "ops.fail",
        1,
    )
    assert "traceback" not in dead


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_redis_password_appears_nowhere_in_the_logs(
    password_redis_server: RedisServer, tmp_path: Path, log_format: str
) -> None:
    assert f":{PASSWORD}@" in password_redis_server.url
    ops = Ops(password_redis_server.url, tmp_path)
    try:
        options = ["--log-format", log_format, "--log-level", "DEBUG", "--max-attempts", "1"]
        worker = ops.start(runworker_command(*options, OPS_CHANNEL))
        started = worker.wait_for_line(STARTED if log_format == "text" else JSON_STARTED).string
        if log_format == "json":
            started = json.loads(started)["message"]
        assert f" on redis://***@127.0.0.1:{password_redis_server.port}/0, " in started
        handle_one_and_fail_one(ops, worker)
        assert stop(worker) == 0
    finally:
        ops.close()

    assert worker.matches("Handler for 'ops.fail'")
    assert PASSWORD not in worker.output
