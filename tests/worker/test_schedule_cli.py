"""``channel-worker schedules`` (a table, or ``--json``) and ``schedules run NAME``."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from typing import Any

import pytest

from tests.worker._ops import channel_worker_command
from tests.worker.process_helpers import REPO_ROOT, runworker_command, wait_until, worker_env
from tests.worker.schedule_helpers import (
    CHANNEL,
    SETTINGS_MODULE,
    SWEEP,
    processes_fixture,  # noqa: F401 (the fixture)
    schedule_settings,
)
from tests.worker.test_cli_process import Processes
from worker.cli.exit_codes import EXIT_NOT_FOUND, EXIT_OK
from worker.schedules.setup import project_schedules
from worker.transport.keys import schedule_state_key

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

SCHEDULES = {
    "sweep": {**SWEEP, "every_s": 1},
    "nightly": {
        "task": "tests.worker.tasks_project.tasks.add",
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "args": [1, 2],
    },
}


def env(redis_url: str) -> dict[str, str]:
    return worker_env({"address": redis_url}) | {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "CW_TEST_SCHEDULES": json.dumps(SCHEDULES),
    }


def schedules(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        channel_worker_command("schedules", *args),
        env=env(redis_url),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def listed(redis_url: str) -> dict[str, dict[str, Any]]:
    done = schedules(redis_url, "--json")
    assert done.returncode == EXIT_OK, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)}


def test_schedules_lists_each_schedule_and_run_fires_one_now_once(
    redis_url: str, redis_server: Any
) -> None:
    with redis_server.client() as client:
        client.flushdb()
    before = listed(redis_url)
    assert set(before) == {"sweep", "nightly"}
    nightly = before["nightly"]
    assert nightly["target"] == "tests.worker.tasks_project.tasks.add"
    assert nightly["when"] == "cron '0 3 * * *' (Europe/Paris)"
    next_run = datetime.fromisoformat(nightly["next_run"])
    assert (next_run.hour, next_run.minute) == (3, 0)
    assert (nightly["last_run"], nightly["outcome"], nightly["due"]) == (None, None, False)

    fired = schedules(redis_url, "run", "nightly")
    assert fired.returncode == EXIT_OK, fired.stderr
    assert "Schedule 'nightly' fired now: enqueued (result " in fired.stdout
    after = listed(redis_url)["nightly"]
    assert after["last_worker"].startswith("channel-worker schedules run (")
    # No worker serves tasks.default here: the task's result waits, READY.
    assert after["outcome"] == "READY"
    with redis_server.client() as client:
        assert client.zcard("asgitasks.default") == 1  # once

    # A nightly tick that passed while the schedule was served and no worker fired it: due.
    with schedule_settings(redis_url, SCHEDULES):
        from django.conf import settings

        digest = project_schedules(settings.CHANNEL_WORKER)["nightly"].digest
    two_days_ago_s = time.time() - 2 * 24 * 3600
    with redis_server.client() as client:
        client.hset(schedule_state_key("asgi", "nightly", digest), "first_seen", two_days_ago_s)
    assert listed(redis_url)["nightly"]["due"] is True

    table = schedules(redis_url)
    assert table.returncode == EXIT_OK, table.stderr
    for shown in ("nightly", "sweep", "never", "READY"):
        assert shown in table.stdout


def test_schedules_run_of_an_unknown_name_lists_the_known_ones(
    redis_url: str, redis_server: Any
) -> None:
    done = schedules(redis_url, "run", "nighty")
    assert done.returncode == EXIT_NOT_FOUND
    assert "no schedule 'nighty' on layer 'default'; known schedules: 'sweep', 'nightly'" in (
        done.stderr
    )


def test_schedules_shows_the_worker_that_fired_the_last_tick(
    processes: Processes, redis_url: str, redis_server: Any
) -> None:
    worker = processes.start(runworker_command(CHANNEL), env(redis_url), REPO_ROOT)
    started = worker.wait_for_line(rf"Worker (?P<id>\S+) consuming {CHANNEL} ")

    def sweep_fired() -> dict[str, Any]:
        row = listed(redis_url)["sweep"]
        return row if row["last_worker"] == started["id"] else {}

    row = wait_until(sweep_fired, "a tick fired by the worker", log=worker)
    assert row["outcome"] == "sent"
    assert row["last_run"] is not None
