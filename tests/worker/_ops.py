"""The operations tests' harness: the ops project's worker and command line as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from channels_redis.core import RedisChannelLayer

from tests.worker.ops_project.consumers import HANDLED_KEY, OPS_CHANNEL
from tests.worker.process_helpers import REPO_ROOT, WorkerProcess, parent_pid

T = TypeVar("T")

OPS_PROJECT_DIR = Path(__file__).resolve().parent / "ops_project"
OPS_SETTINGS = "tests.worker.ops_project.settings"
# The text start-up line of one worker process: "... [1234] Worker host:1234:ab12cd34 consuming".
STARTED = rf"\[(?P<pid>\d+)\] Worker \S+ consuming {OPS_CHANNEL} \(concurrency"
# Variables of the test run that would change what the processes under test do.
_SCRUBBED = (
    "REDIS_URL",
    "DJANGO_SETTINGS_MODULE",
    "CHANNEL_WORKER_HEALTH_DIR",
    "PROMETHEUS_MULTIPROC_DIR",
    "COLUMNS",
    "LINES",
)


def channel_worker_command(*args: str) -> list[str]:
    """The ``channel-worker`` console script of the environment running the tests."""
    script = Path(sys.executable).with_name("channel-worker")
    if not script.exists():
        pytest.fail(f"{script} is missing: install the project (make sync) to get it")
    return [str(script), *args]


def runworker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker", *args]


class Ops:
    """One test's Redis, health directory and processes; kills whatever is left at the end.

    Temporary files of the processes (health records, prometheus-client's multiprocess files)
    go under ``directory``.
    """

    def __init__(self, redis_url: str, directory: Path) -> None:
        self.redis_url = redis_url
        self.health_dir = directory / "health"
        self.temp_dir = directory / "tmp"
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.client = redis.Redis.from_url(redis_url)
        self.started: list[WorkerProcess] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED}
        env |= {
            "DJANGO_SETTINGS_MODULE": OPS_SETTINGS,
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "REDIS_URL": self.redis_url,
            "CHANNEL_WORKER_HEALTH_DIR": str(self.health_dir),
            "TMPDIR": str(self.temp_dir),
        }
        return env | extra

    def start(
        self, command: Sequence[str], *, cwd: Path = REPO_ROOT, env: Mapping[str, str] | None = None
    ) -> WorkerProcess:
        process = WorkerProcess(command, env if env is not None else self.env(), cwd)
        self.started.append(process)
        return process

    def runworker(self, *args: str, started: str = STARTED) -> WorkerProcess:
        """``runworker [args] ops-jobs``, once its start-up line is logged."""
        worker = self.start(runworker_command(*args, OPS_CHANNEL))
        worker.wait_for_line(started)
        return worker

    def run(self, command: Sequence[str], **extra_env: str) -> subprocess.CompletedProcess[str]:
        """Run a command that ends by itself, e.g. ``runworker --check`` or ``status``."""
        return subprocess.run(
            list(command),
            env=self.env(**extra_env),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def check(self, *channels: str) -> subprocess.CompletedProcess[str]:
        return self.run(runworker_command("--check", *channels))

    def send(self, *messages: Mapping[str, Any], channel: str = OPS_CHANNEL) -> None:
        """Send messages the way a Channels project does: ``channel_layer.send()``."""

        async def send() -> None:
            layer = RedisChannelLayer(hosts=[self.redis_url], expiry=3600)
            try:
                for message in messages:
                    await layer.send(channel, dict(message))
            finally:
                await layer.close_pools()

        asyncio.run(send())

    def handled(self) -> list[dict[str, Any]]:
        """``{"id": ..., "pid": ...}`` of each message the consumer handled, in order."""
        raw: list[bytes] = self.client.lrange(HANDLED_KEY, 0, -1)  # type: ignore[assignment]
        return [json.loads(entry) for entry in raw]

    def handled_ids(self) -> list[str]:
        return [entry["id"] for entry in self.handled()]

    def close(self) -> None:
        for process in self.started:
            process.close()
        self.client.close()


def wait_for(
    condition: Callable[[], T | None], what: str, *, log: WorkerProcess, timeout_s: float = 30.0
) -> T:
    """Poll until ``condition()`` returns something other than None, and return that."""
    deadline = time.monotonic() + timeout_s
    while (value := condition()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {timeout_s} s waiting for {what}; log:\n{log.output}")
        time.sleep(0.05)
    return value


def stop(worker: WorkerProcess, *, timeout_s: float = 30.0) -> int:
    worker.send_signal(signal.SIGTERM)
    return worker.wait_exit(timeout_s=timeout_s)


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z" or parent_pid(pid) is None
