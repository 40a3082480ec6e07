"""Faults with real processes: a loaded ``runworker`` killed with SIGKILL, Redis killed and
restarted under a worker, poison messages, and dead letters requeued with ``channel-worker``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from channels_redis.core import RedisChannelLayer

from tests.redis_server import RedisServer
from tests.worker.faults_project.consumers import (
    CHANNEL,
    DONE_KEY,
    FAILED_KEY,
    MESSAGE_TYPE,
)
from tests.worker.process_helpers import WorkerProcess, runworker_command, wait_until
from worker.config import AT_LEAST_ONCE, AT_MOST_ONCE
from worker.transport.keys import ChannelKeys

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_DIR = Path(__file__).resolve().parent / "faults_project"
SETTINGS_MODULE = "tests.worker.faults_project.settings"
# channels-redis's default prefix, as the project's layer uses it.
KEYS = ChannelKeys.for_channel("asgi", CHANNEL)
EXPIRY_S = 3600
# Figures of the fault runs, for people: `pytest -s` prints them too.
OUTPUT_DIR = Path(__file__).resolve().parent / "faults_output"
STARTED = r"Worker \S+ consuming faults "

# The kill -9 run: two workers share a backlog of LOAD messages.
LOAD = 5000
CONCURRENCY = 20
# A killed at-most-once worker loses at most what it had running plus what it had prefetched
# (the prefetch defaults to the concurrency).
LOSS_BOUND = CONCURRENCY + CONCURRENCY
LEASE_S = "2"


class Fleet:
    """The worker processes of one test, killed at teardown if still running."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[WorkerProcess] = []
        #: More environment for every process, e.g. RECORD_REDIS_URL.
        self.extra_env: dict[str, str] = {}

    def env(self, redis_url: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE", "PYTHONPATH")
        }
        return env | {
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(PROJECT_DIR)]),
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": redis_url,
            "CHANNEL_WORKER_HEALTH_DIR": str(self.tmp_path / "health"),
            **self.extra_env,
        }

    def start(
        self, redis_url: str, *options: str, env: Mapping[str, str] | None = None
    ) -> WorkerProcess:
        """``runworker faults OPTIONS``, once it has said which channels it consumes.

        ``env`` adds to the fleet's environment for this process only, e.g. a health directory
        of its own, so ``--check`` answers for this worker alone.
        """
        command = runworker_command(CHANNEL, "--shutdown-timeout-s", "10", *options)
        worker = WorkerProcess(command, self.env(redis_url) | dict(env or {}), REPO_ROOT)
        self.processes.append(worker)
        worker.wait_for_line(STARTED)
        return worker

    def admin(self, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``channel-worker --settings ... ARGS``, the console script next to this Python."""
        script = Path(sys.executable).parent / "channel-worker"
        return subprocess.run(
            [str(script), "--settings", SETTINGS_MODULE, *args],
            env=self.env(redis_url),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def close(self) -> None:
        for worker in self.processes:
            worker.close()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    processes = Fleet(tmp_path)
    yield processes
    processes.close()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as client:
        yield client


def send(client: redis.Redis, messages: Sequence[Mapping[str, Any]]) -> None:
    """Queue messages exactly as ``channel_layer.send()`` does, pipelined for speed."""
    layer = RedisChannelLayer(expiry=EXPIRY_S)
    for start in range(0, len(messages), 500):
        with client.pipeline(transaction=False) as pipe:
            for message in messages[start : start + 500]:
                member = layer.serialize({"type": MESSAGE_TYPE, **message})
                pipe.zadd(KEYS.queue, {member: time.time()})
            pipe.expire(KEYS.queue, EXPIRY_S)
            pipe.execute()


def records(client: redis.Redis, key: str = DONE_KEY) -> list[dict[str, Any]]:
    """What the consumers recorded: {"id", "pid", "attempt"} per handled message."""
    raw: list[bytes] = client.lrange(key, 0, -1)  # type: ignore[assignment]
    return [json.loads(entry) for entry in raw]


def recorded_ids(client: redis.Redis) -> set[str]:
    return {entry["id"] for entry in records(client)}


def size(client: redis.Redis, key: str) -> int:
    found: int = client.zcard(key)
    return found


def stop(worker: WorkerProcess) -> dict[str, int]:
    """SIGTERM, a clean exit, and the counters of its summary line."""
    worker.send_signal(signal.SIGTERM)
    assert worker.wait_exit() == 0, worker.output
    return worker.summary()


def idle_since(fleet: Fleet, worker: WorkerProcess, moment: float) -> bool:
    """Whether the worker's health file, written after ``moment``, shows it finished every
    message it took (nothing running or prefetched)."""
    path = fleet.tmp_path / "health" / f"{worker.pid}.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    counters = record["counters"]
    return bool(record["updated_at"] > moment and counters["received"] == counters["completed"])


def report(name: str, figures: Mapping[str, Any]) -> None:
    """Print the figures of a fault run and keep them in faults_output/NAME.json."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    # Run output, never committed.
    (OUTPUT_DIR / ".gitignore").write_text("*\n")
    (OUTPUT_DIR / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{name}: {json.dumps(figures)}")


def tally(client: redis.Redis, sent: Sequence[str]) -> dict[str, int]:
    """Sent, handled (distinct ids), duplicated (handled again), still queued, and lost."""
    handled = Counter(entry["id"] for entry in records(client))
    assert set(handled) <= set(sent)
    queued = size(client, KEYS.queue)
    return {
        "sent": len(sent),
        "processed": len(handled),
        "duplicated": sum(handled.values()) - len(handled),
        "still_queued": queued,
        "lost": len(sent) - len(handled) - queued,
    }


# kill -9 under load


@pytest.mark.timeout(120)
@pytest.mark.parametrize("delivery", [AT_LEAST_ONCE, AT_MOST_ONCE])
def test_sigkill_of_a_loaded_worker_loses_nothing_at_least_once_and_at_most_its_bound_otherwise(
    fleet: Fleet, redis_server: RedisServer, client: redis.Redis, delivery: str
) -> None:
    options = (
        *("--delivery", delivery, "--lease-s", LEASE_S, "--concurrency", str(CONCURRENCY)),
        *("--health-interval-s", "0.2"),
    )
    victim, survivor = (fleet.start(redis_server.url, *options) for _ in range(2))
    ids = [f"load-{number}" for number in range(LOAD)]
    send(client, [{"id": message_id, "sleep_s": 0.01} for message_id in ids])

    wait_until(
        lambda: client.llen(DONE_KEY) >= LOAD // 2,
        "half of the messages handled",
        timeout_s=60,
        log=victim,
    )
    victim.process.kill()
    victim.wait_exit()
    by_victim = sum(entry["pid"] == victim.pid for entry in records(client))
    assert by_victim > 0, "both workers should have been consuming"

    if delivery == AT_LEAST_ONCE:
        wait_until(
            lambda: len(recorded_ids(client)) == LOAD,
            "every message handled",
            timeout_s=60,
            log=survivor,
        )
    else:
        wait_until(lambda: size(client, KEYS.queue) == 0, "channel drained", log=survivor)
        drained_at = time.time()
        wait_until(
            lambda: idle_since(fleet, survivor, drained_at),
            "the survivor finished everything it took",
            log=survivor,
        )
    counters = stop(survivor)
    figures = tally(client, ids)
    redelivered = sum(
        int(match[1]) for match in survivor.matches(r"Redelivering (\d+) message\(s\)")
    )
    second_tries = sum(entry["attempt"] > 1 for entry in records(client))
    report(
        f"kill9-{delivery}",
        {
            "delivery": delivery,
            **figures,
            "handled_by_killed_worker": by_victim,
            "redelivered": redelivered,
            "handled_on_a_later_attempt": second_tries,
            "loss_bound": LOSS_BOUND,
            "survivor_summary": counters,
        },
    )

    assert size(client, KEYS.inflight) == 0
    assert size(client, KEYS.dead) == 0
    if delivery == AT_LEAST_ONCE:
        assert figures["processed"] == LOAD
        assert figures["lost"] == 0
        # The killed worker's leases ran out and the survivor took them over.
        assert redelivered > 0
        assert second_tries >= figures["duplicated"]
    else:
        assert figures["duplicated"] == figures["still_queued"] == 0
        assert figures["lost"] <= LOSS_BOUND
        assert redelivered == second_tries == 0


# Redis killed under a running worker


@pytest.mark.timeout(120)
def test_worker_rides_out_redis_killed_with_sigkill_and_restarted_losing_nothing(
    fleet: Fleet, own_redis_server: RedisServer
) -> None:
    server = own_redis_server
    worker = fleet.start(server.url, "--lease-s", LEASE_S, "--concurrency", "10")
    before = [f"before-{number}" for number in range(400)]
    after = [f"after-{number}" for number in range(200)]
    with server.client() as client:
        send(client, [{"id": message_id, "sleep_s": 0.05} for message_id in before])
        wait_until(
            lambda: client.llen(DONE_KEY) >= 100,
            "a quarter handled",
            log=worker,
        )
    # appendfsync always: everything Redis acknowledged is on disk when it is killed.
    server.kill()
    worker.wait_for_line(r"Redis host 0 unreachable for channel 'faults'")
    server.start()
    worker.wait_for_line(r"Redis host 0 is back for channel 'faults'")
    with server.client() as client:
        send(client, [{"id": message_id, "sleep_s": 0.05} for message_id in after])
        wait_until(
            lambda: len(recorded_ids(client)) == len(before) + len(after),
            "every message sent before the kill and after the restart handled",
            timeout_s=60,
            log=worker,
        )
        # The same process resumed: no restart, no second start-up.
        assert worker.process.poll() is None
        assert len(worker.matches(STARTED)) == 1
        assert {entry["pid"] for entry in records(client)} == {worker.pid}
        counters = stop(worker)
        figures = tally(client, before + after)
        retried = sum(entry["attempt"] > 1 for entry in records(client))
        report(
            "redis-kill",
            {
                **figures,
                "sent_before_kill": len(before),
                "sent_after_restart": len(after),
                "handled_on_a_later_attempt": retried,
                "summary": counters,
            },
        )
        assert figures["lost"] == figures["still_queued"] == 0
        assert size(client, KEYS.dead) == 0
        assert size(client, KEYS.inflight) == 0


# Poison messages and dead letters through the command line


@pytest.mark.timeout(90)
def test_poison_message_among_1000_is_dead_lettered_after_3_attempts_while_the_rest_complete(
    fleet: Fleet, redis_server: RedisServer, client: redis.Redis
) -> None:
    worker = fleet.start(
        redis_server.url, "--max-attempts", "3", "--lease-s", LEASE_S, "--concurrency", "20"
    )
    messages: list[dict[str, Any]] = [{"id": f"ok-{number}"} for number in range(1000)]
    messages.insert(500, {"id": "poison-1", "poison": True})
    send(client, messages)
    wait_until(
        lambda: len(recorded_ids(client)) == 1000 and size(client, KEYS.dead) == 1,
        "the others handled and the poison dead-lettered",
        timeout_s=60,
        log=worker,
    )
    [letter_id] = client.zrange(KEYS.dead, 0, -1)
    letter = json.loads(client.hget(KEYS.dead_records, letter_id))  # type: ignore[arg-type]
    assert letter["reason"] == "failed 3 attempt(s); last: PoisonError: poison message 'poison-1'"
    assert (letter["message_type"], letter["message_id"]) == (MESSAGE_TYPE, "poison-1")
    assert (letter["attempts"], letter["error_type"]) == (3, "PoisonError")
    failures = records(client, FAILED_KEY)
    assert [(entry["id"], entry["attempt"]) for entry in failures] == [
        ("poison-1", 1),
        ("poison-1", 2),
        ("poison-1", 3),
    ]
    worker.wait_for_line(r"Dead-lettered 'faults.run' on channel 'faults' after 3 attempt\(s\)")
    counters = stop(worker)
    assert {name: counters[name] for name in ("completed", "failed", "retried", "dead")} == {
        "completed": 1000,
        "failed": 3,
        "retried": 2,
        "dead": 1,
    }
    assert size(client, KEYS.inflight) == 0


def letter_rows(output: str) -> dict[str, list[str]]:
    """``dead list`` rows by message id: [id, dead at, type, message id, tries, reason...]."""
    rows = [line.split() for line in output.splitlines()[1:]]
    return {row[3]: row for row in rows}


@pytest.mark.timeout(90)
def test_dead_letter_is_listed_shown_requeued_to_the_running_worker_and_purged_by_the_cli(
    fleet: Fleet, redis_server: RedisServer, client: redis.Redis
) -> None:
    url = redis_server.url
    worker = fleet.start(url, "--max-attempts", "2", "--lease-s", LEASE_S)
    fixed_flag = "cw-faults:fixed:flaky-1"
    send(
        client,
        [
            {"id": "ok-1"},
            {"id": "flaky-1", "fail_unless": fixed_flag},
            {"id": "broken-1", "fail_unless": "cw-faults:fixed:broken-1"},
        ],
    )
    wait_until(
        lambda: recorded_ids(client) == {"ok-1"} and size(client, KEYS.dead) == 2,
        "two dead letters",
        log=worker,
    )

    listing = fleet.admin(url, "dead", "list", CHANNEL)
    assert listing.returncode == 0, listing.stderr
    rows = letter_rows(listing.stdout)
    assert sorted(rows) == ["broken-1", "flaky-1"]
    assert all(row[2] == MESSAGE_TYPE and row[4] == "2" for row in rows.values())
    assert "failed 2 attempt(s); last: PoisonError: poison message 'flaky-1'" in listing.stdout
    flaky_letter = rows["flaky-1"][0]

    shown = fleet.admin(url, "dead", "show", CHANNEL, flaky_letter)
    assert shown.returncode == 0, shown.stderr
    assert "traceback:\nTraceback (most recent call last):" in shown.stdout
    assert "PoisonError: poison message 'flaky-1'" in shown.stdout
    assert "'id': 'flaky-1'" in shown.stdout

    client.set(fixed_flag, "1")
    requeued = fleet.admin(url, "dead", "requeue", CHANNEL, flaky_letter)
    assert (requeued.returncode, requeued.stdout.strip()) == (
        0,
        "Requeued 1 dead letter(s) on channel 'faults'.",
    )
    wait_until(lambda: "flaky-1" in recorded_ids(client), "the requeued letter handled", log=worker)
    [flaky] = [entry for entry in records(client) if entry["id"] == "flaky-1"]
    assert (flaky["pid"], flaky["attempt"]) == (worker.pid, 1)
    assert sorted(letter_rows(fleet.admin(url, "dead", "list", CHANNEL).stdout)) == ["broken-1"]

    missing = fleet.admin(url, "dead", "requeue", CHANNEL, "0" * 32)
    assert (missing.returncode, missing.stdout.strip()) == (
        1,
        "Requeued 0 dead letter(s) on channel 'faults'.",
    )
    purged = fleet.admin(url, "dead", "purge", CHANNEL)
    assert (purged.returncode, purged.stdout.strip()) == (
        0,
        "Purged 1 dead letter(s) of channel 'faults'.",
    )
    empty = fleet.admin(url, "dead", "list", CHANNEL)
    assert empty.stdout.strip() == "No dead letters on channel 'faults'."
    assert stop(worker)["completed"] == 2
