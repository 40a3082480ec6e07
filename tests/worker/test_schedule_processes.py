"""Schedules in real ``runworker`` processes: one fire per tick across replicas, across
``--processes 2``, and when a replica is killed with SIGKILL."""

from __future__ import annotations

import json
import signal
from collections import Counter
from typing import Any

import pytest

from tests.worker.process_helpers import (
    REPO_ROOT,
    WorkerProcess,
    runworker_command,
    wait_until,
    worker_env,
)
from tests.worker.schedule_helpers import (
    CHANNEL,
    SETTINGS_MODULE,
    SWEEP,
    processes_fixture,  # noqa: F401 (the fixture)
    recorded_ticks,
)
from tests.worker.test_cli_process import Processes
from worker.cli.exit_codes import EXIT_CONFIG
from worker.transport.keys import schedule_tick_key

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

STARTED = rf"Worker \S+ consuming {CHANNEL} \(concurrency"
#: A tick a second, and a claim lease of two: a dead replica's tick fires within ~2 s.
SCHEDULES = {"sweep": {**SWEEP, "every_s": 1}}
LEASE_S = "2"
SLOW_TASK = "tests.worker.schedules_project.tasks.tick"


def start(
    processes: Processes, redis_url: str, *args: str, replicas: int = 1, count: int = 1
) -> list[WorkerProcess]:
    """``replicas`` runworker commands started together, once each logged ``count`` start-ups."""
    env = worker_env({"address": redis_url}) | {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "CW_TEST_SCHEDULES": json.dumps(SCHEDULES),
        "CW_TEST_SCHEDULE_LEASE_S": LEASE_S,
    }
    workers = [
        processes.start(runworker_command(*args, CHANNEL), env, REPO_ROOT) for _ in range(replicas)
    ]
    for worker in workers:
        worker.wait_for_lines(STARTED, count)
    return workers


def ticks_after(redis_url: str, since_s: float) -> list[float]:
    return [entry["tick"] for entry in recorded_ticks(redis_url) if entry["tick"] > since_s]


def assert_each_tick_once(ticks: list[float]) -> None:
    """Every tick from the first to the last seen was handled, and none twice."""
    counts = Counter(ticks)
    assert [tick for tick, count in counts.items() if count > 1] == []
    assert sorted(counts) == [float(t) for t in range(int(min(ticks)), int(max(ticks)) + 1)]


def wait_for_ticks(redis_url: str, since_s: float, count: int, log: WorkerProcess) -> list[float]:
    def enough() -> list[float]:
        found = ticks_after(redis_url, since_s)
        return found if len(found) >= count else []

    return wait_until(enough, f"{count} ticks after {since_s}", timeout_s=count + 15.0, log=log)


def latest(redis_url: str, log: WorkerProcess) -> float:
    found = wait_until(lambda: recorded_ticks(redis_url), "a first tick", log=log)
    return float(max(entry["tick"] for entry in found))


def test_three_runworker_replicas_fire_each_tick_once(
    processes: Processes, redis_url: str, redis_server: Any
) -> None:
    workers = start(processes, redis_url, replicas=3)
    since_s = latest(redis_url, workers[0])
    ticks = wait_for_ticks(redis_url, since_s, 4, workers[0])
    assert_each_tick_once(ticks)
    firing = {line for worker in workers for line in worker.matches(r"Schedule 'sweep' fired")}
    assert firing  # and the loops log what they fire


def test_supervised_processes_fire_each_tick_once(
    processes: Processes, redis_url: str, redis_server: Any
) -> None:
    [supervisor] = start(processes, redis_url, "--processes", "2", count=2)
    since_s = latest(redis_url, supervisor)
    assert_each_tick_once(wait_for_ticks(redis_url, since_s, 4, supervisor))
    firing = {int(match["pid"]) for match in supervisor.matches(r"\[(?P<pid>\d+)\] Schedule")}
    assert supervisor.pid not in firing  # the children fire, not the supervisor


def test_a_replica_killed_with_sigkill_loses_no_tick_and_doubles_none(
    processes: Processes, redis_url: str, redis_server: Any
) -> None:
    workers = start(processes, redis_url, replicas=3)
    since_s = latest(redis_url, workers[0])
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait_exit()
    killed_at_s = latest(redis_url, workers[1])
    ticks = wait_for_ticks(redis_url, since_s, 4, workers[1])
    assert max(ticks) >= killed_at_s + 3
    assert_each_tick_once(ticks)


def test_runworker_refuses_a_bad_schedule_at_start_up_with_one_line(
    processes: Processes, redis_url: str
) -> None:
    env = worker_env({"address": redis_url}) | {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "CW_TEST_SCHEDULES": json.dumps({"bad": {**SWEEP, "cron": "0 3 * *"}}),
    }
    worker = processes.start(runworker_command(CHANNEL), env, REPO_ROOT)
    assert worker.wait_exit() == EXIT_CONFIG
    [line] = worker.matches(r"Schedule 'bad' .*")
    assert "'cron' '0 3 * *' is not a cron expression (4 fields); use five fields" in line[0]
    assert "Traceback" not in worker.output


def test_a_replica_killed_between_its_claim_and_its_send_leaves_the_tick_to_another(
    processes: Processes, redis_url: str, redis_server: Any
) -> None:
    # The slow backend holds each enqueue for half a second after the claim: a wide window.
    env = worker_env({"address": redis_url}) | {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "CW_TEST_SCHEDULES": json.dumps({"slow-tick": {"task": SLOW_TASK, "every_s": 1}}),
        "CW_TEST_SCHEDULE_LEASE_S": "1.5",
    }
    workers = [processes.start(runworker_command("tasks.slow"), env, REPO_ROOT) for _ in range(3)]
    by_id = {
        worker.wait_for_line(r"Worker (?P<id>\S+) consuming tasks\.slow ")["id"]: worker
        for worker in workers
    }
    client = redis_server.client()

    def marks() -> dict[str, str]:
        keys = client.keys(schedule_tick_key("asgi", "slow-tick", "*", 0).removesuffix(":0") + ":*")
        return {key.decode(): (client.get(key) or b"").decode() for key in keys}

    def a_claim_in_progress() -> list[tuple[str, str]]:
        return [(key, value) for key, value in marks().items() if value.startswith("claimed")]

    [(tick_key, claim), *_] = wait_until(a_claim_in_progress, "a claimed tick", log=workers[0])
    doomed = claim.split()[2]
    by_id[doomed].send_signal(signal.SIGKILL)
    by_id[doomed].wait_exit()

    def fired_by_another() -> str:
        value = marks().get(tick_key, "")
        return value if value.startswith("fired") and doomed not in value else ""

    wait_until(fired_by_another, "the tick taken over", log=workers[0])

    def results_match_fired_ticks() -> bool:
        fired = [value for value in marks().values() if value.startswith("fired")]
        if len(fired) != len(marks()):
            return False  # a claim in progress: look again
        return len(client.keys("asgi#cw#task-result:*")) == len(fired)

    # One stored result per fired tick: the killed worker enqueued nothing, no tick twice.
    wait_until(results_match_fired_ticks, "one result per fired tick", log=workers[0])
    client.close()
