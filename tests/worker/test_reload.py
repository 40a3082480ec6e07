"""``runworker --reload``: a new worker process when a Python file changes, none left at the end."""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.worker._ops import OPS_PROJECT_DIR, STARTED, Ops, gone, runworker_command
from tests.worker.ops_project.consumers import OPS_CHANNEL
from tests.worker.process_helpers import WorkerProcess, parent_pid, wait_until
from worker.transport.keys import ChannelKeys

KEYS = ChannelKeys.for_channel("asgi", OPS_CHANNEL)

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(240)]


@pytest.fixture
def ops(redis_url: str, tmp_path: Path) -> Iterator[Ops]:
    harness = Ops(redis_url, tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory holding only a copy of the ops project, so the watched tree is small."""
    root = tmp_path / "site"
    shutil.copytree(
        OPS_PROJECT_DIR, root / "ops_project", ignore=shutil.ignore_patterns("__pycache__")
    )
    return root


def start_reloader(ops: Ops, site: Path) -> tuple[WorkerProcess, int]:
    """``runworker --reload`` in ``site``, and the pid of its first worker process."""
    reloader = ops.start(
        runworker_command("--reload", "--shutdown-timeout-s", "3", OPS_CHANNEL),
        cwd=site,
        env=ops.env(DJANGO_SETTINGS_MODULE="ops_project.settings"),
    )
    reloader.wait_for_line(rf"Reloading on changes to Python files under {re.escape(str(site))}$")
    worker = int(reloader.wait_for_line(STARTED, timeout_s=60)["pid"])
    assert worker != reloader.pid
    assert parent_pid(worker) == reloader.pid
    return reloader, worker


def assert_handles_a_message(ops: Ops, reloader: WorkerProcess, worker: int, message: str) -> None:
    ops.send({"type": "ops.run", "id": message})
    wait_until(lambda: message in ops.handled_ids(), f"message {message!r}", log=reloader)
    assert ops.handled()[-1] == {"id": message, "pid": worker}


def test_reload_restarts_the_worker_on_a_python_file_change_and_stops_on_sigint(
    ops: Ops, site: Path
) -> None:
    reloader, first = start_reloader(ops, site)
    assert_handles_a_message(ops, reloader, first, "before")

    consumers = site / "ops_project" / "consumers.py"
    consumers.write_text(consumers.read_text() + "\n# Edited by the reload test.\n")

    reloader.wait_for_line(r"Restarting the worker: \d+ file\(s\) changed")
    second = int(reloader.wait_for_lines(STARTED, 2, timeout_s=60)[1]["pid"])
    assert second != first
    assert parent_pid(second) == reloader.pid
    # The old worker drained and exited by itself rather than being killed.
    reloader.wait_for_line(rf"\[{first}\] Worker stopped: received=1 completed=1 ")
    wait_until(lambda: gone(first), f"worker process {first} to exit", log=reloader)
    assert_handles_a_message(ops, reloader, second, "after")

    reloader.send_signal(signal.SIGINT)

    assert reloader.wait_exit(timeout_s=60) == 0
    reloader.wait_for_line(rf"\[{second}\] Worker stopped: received=1 completed=1 ")
    wait_until(lambda: gone(second), f"worker process {second} to exit", log=reloader)
    assert len(reloader.matches(STARTED)) == 2
    assert not reloader.matches(r"SIGKILL|exiting at once")


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "hangup"])
def test_terminal_ctrl_c_or_hangup_drains_the_reloaded_worker_instead_of_forcing_it(
    ops: Ops, site: Path, number: signal.Signals
) -> None:
    reloader, worker = start_reloader(ops, site)
    ops.send({"type": "ops.run", "id": "in-flight", "sleep_s": 1})
    wait_until(
        lambda: ops.client.zcard(KEYS.inflight) == 1, "the message to be taken", log=reloader
    )

    # A terminal sends SIGINT (Ctrl-C) or SIGHUP (closed) to its foreground process group.
    os.killpg(reloader.pid, number)

    assert reloader.wait_exit(timeout_s=60) == 0
    reloader.wait_for_line(rf"\[{worker}\] Worker stopped: received=1 completed=1 ")
    assert ops.handled_ids() == ["in-flight"]
    wait_until(lambda: gone(worker), f"worker process {worker} to exit", log=reloader)
    assert not reloader.matches(r"SIGKILL|exiting at once")
