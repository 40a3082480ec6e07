"""One of two workers stalled for longer than its lease, with real redis-server and ``runworker``.

The stalled worker is cut off from Redis by a blackhole (its connections stay open and silent)
or stopped with SIGSTOP (for longer than its message timeout too). Meanwhile its leases run out
and the other worker redelivers and handles its messages; afterwards it resumes by itself, and
no attempt fails. The consumers record what they handle directly on the suite's redis-server,
never through the proxy, so a blackholed worker's handlers still finish and every handler run
is counted. ``pytest tests/faults -s`` prints the figures of the delivery page's fault table.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter

import pytest
import redis
from channels_redis.core import RedisChannelLayer

from tests.faults.lengths import (
    STALLED_FOR_S,
    STALLED_LEASE_S,
    STALLED_LOAD,
    STALLED_MESSAGE_TIMEOUT_S,
    limit_s,
)
from tests.faults.proxy import FaultProxy
from tests.faults.test_redis_faults import check
from tests.redis_server import RedisServer
from tests.worker.faults_project.consumers import FAILED_KEY
from tests.worker.process_helpers import WorkerProcess, wait_until
from tests.worker.test_faults import KEYS, Fleet, records, report, send, size, stop
from worker.constants import READ_TIMEOUT_MARGIN_S, RECONNECT_BACKOFF_MAX_S

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

LEASE_S = STALLED_LEASE_S
MESSAGE_TIMEOUT_S = STALLED_MESSAGE_TIMEOUT_S
CONCURRENCY = 5
PREFETCH = 10
# Only what the stalled worker held when it stalled may run twice, as the other worker handles
# it once its lease runs out: a message per slot running, the prefetch buffer, and a message per
# slot finished whose acknowledgement had not reached Redis yet.
DUPLICATES_BOUND = CONCURRENCY + PREFETCH + CONCURRENCY
OPTIONS = (
    *("--lease-s", f"{LEASE_S:g}", "--message-timeout-s", f"{MESSAGE_TIMEOUT_S:g}"),
    *("--concurrency", str(CONCURRENCY), "--prefetch", str(PREFETCH)),
    *("--health-interval-s", "0.5"),
)
LOAD = STALLED_LOAD
HANDLER_S = 0.1
# The socket read timeout of the worker's connections: the layer's blocking receive plus the
# margin (transport/layer.py). A command whose request or reply the blackhole swallowed waits
# it out, then the worker reconnects with backoff.
READ_TIMEOUT_S = RedisChannelLayer().brpop_timeout + READ_TIMEOUT_MARGIN_S
RECOVERY_BOUND_S = READ_TIMEOUT_S + RECONNECT_BACKOFF_MAX_S


def own_health(fleet: Fleet, name: str) -> dict[str, str]:
    """The environment of a worker with a health directory of its own: ``--check`` with it
    answers for that worker alone (a healthy second worker would answer for both)."""
    return {"CHANNEL_WORKER_HEALTH_DIR": str(fleet.tmp_path / f"health-{name}")}


def runs_by(client: redis.Redis, worker: WorkerProcess) -> int:
    """Handler runs recorded by ``worker``."""
    return sum(entry["pid"] == worker.pid for entry in records(client))


def redelivered(worker: WorkerProcess) -> int:
    """Messages ``worker`` put back on the channel because their lease ran out."""
    return sum(int(match[1]) for match in worker.matches(r"Redelivering (\d+) message\(s\)"))


def check_until(
    fleet: Fleet, url: str, env: dict[str, str], returncode: int, what: str, log: WorkerProcess
) -> subprocess.CompletedProcess[str]:
    """Run ``runworker --check`` until it exits with ``returncode``; that run."""

    def probe() -> subprocess.CompletedProcess[str] | None:
        result = check(fleet, url, env)
        return result if result.returncode == returncode else None

    found = wait_until(probe, what, log=log)
    assert found is not None
    return found


def both_busy(client: redis.Redis, first: WorkerProcess, second: WorkerProcess) -> bool:
    return runs_by(client, first) >= 20 and runs_by(client, second) >= 20


def all_settled(client: redis.Redis, sent: list[str]) -> bool:
    handled = {entry["id"] for entry in records(client)}
    return (
        len(handled) == len(sent)
        and size(client, KEYS.inflight) == 0
        and size(client, KEYS.queue) == 0
    )


def resumed(
    client: redis.Redis, worker: WorkerProcess, runs_before: int, since: float
) -> float | None:
    """Seconds since ``since`` once ``worker`` ran more than it could have held when it
    stalled, so it has taken messages from Redis again; None before that."""
    if runs_by(client, worker) > runs_before + DUPLICATES_BOUND:
        return time.monotonic() - since
    return None


def figures(
    client: redis.Redis, sent: list[str], stalled: WorkerProcess, healthy: WorkerProcess
) -> dict[str, object]:
    entries = records(client)
    runs = Counter(entry["id"] for entry in entries)
    later = [entry for entry in entries if entry["attempt"] > 1]
    return {
        "sent": len(sent),
        "handler_runs": sum(runs.values()),
        "ran_twice": sum(count > 1 for count in runs.values()),
        "most_runs_of_one_message": max(runs.values()),
        "dead_lettered": size(client, KEYS.dead),
        "lost": len(sent) - len(runs),
        "failed_runs": client.llen(FAILED_KEY),
        "redelivered": redelivered(stalled) + redelivered(healthy),
        "redelivered_by_the_other_worker": redelivered(healthy),
        "handled_on_a_later_attempt": len(later),
        "of_them_by_the_other_worker": sum(entry["pid"] == healthy.pid for entry in later),
        "highest_attempt": max(entry["attempt"] for entry in entries),
        "attempt_records_left": client.hlen(KEYS.attempts),
        "runs_by_stalled_worker": runs_by(client, stalled),
        "duplicates_bound": DUPLICATES_BOUND,
    }


def settle(
    client: redis.Redis, sent: list[str], stalled: WorkerProcess, healthy: WorkerProcess
) -> list[dict[str, int]]:
    """Wait until every message is handled and acknowledged, then stop both workers; their
    final counters."""
    wait_until(
        lambda: all_settled(client, sent),
        "every message handled and acknowledged",
        timeout_s=limit_s(60),
        log=stalled,
    )
    return [stop(stalled), stop(healthy)]


def assert_row(
    name: str,
    row: dict[str, object],
    summaries: list[dict[str, int]],
    workers: tuple[WorkerProcess, ...],
) -> None:
    """Print the fault table's row and hold it to the promise: nothing lost or dead-lettered,
    duplicates bounded by what the stalled worker held, no failed attempt, no crash."""
    report(name, row)
    for worker in workers:
        assert not worker.matches("Traceback|died unexpectedly"), worker.output
    assert row["dead_lettered"] == row["lost"] == row["failed_runs"] == 0, row
    sent, runs = int(str(row["sent"])), int(str(row["handler_runs"]))
    assert runs <= sent + DUPLICATES_BOUND, row
    # The other worker took over the stalled one's leases and handled what they held.
    assert int(str(row["redelivered_by_the_other_worker"])) > 0, row
    assert int(str(row["of_them_by_the_other_worker"])) > 0, row
    # A message ran twice only because its lease ran out, once: no retry, no second redelivery.
    assert int(str(row["ran_twice"])) <= int(str(row["redelivered"])), row
    assert row["highest_attempt"] in (1, 2), row
    assert row["attempt_records_left"] == 0, row
    for counters in summaries:
        # A stall is no failed attempt: nothing timed out, was retried or dead-lettered.
        assert counters["failed"] == counters["retried"] == counters["dead"] == 0, counters


@pytest.mark.timeout(limit_s(120))
def test_blackhole_longer_than_the_lease_of_one_of_two_workers_loses_nothing(
    fleet: Fleet, redis_server: RedisServer, records_client: redis.Redis
) -> None:
    with FaultProxy(redis_server.port) as proxy:
        stalled = fleet.start(proxy.url, *OPTIONS, env=own_health(fleet, "stalled"))
        healthy = fleet.start(redis_server.url, *OPTIONS)
        sent = [f"blackhole-{number}" for number in range(LOAD)]
        send(records_client, [{"id": message_id, "sleep_s": HANDLER_S} for message_id in sent])
        wait_until(
            lambda: both_busy(records_client, stalled, healthy), "both workers busy", log=stalled
        )

        proxy.blackhole()
        began = time.monotonic()
        wait_until(
            lambda: redelivered(healthy) > 0,
            "the other worker redelivering the stalled worker's messages",
            timeout_s=LEASE_S + 20,
            log=healthy,
        )
        # Cut off but alive, and a restart would meet the same blackhole: healthy, not stale.
        during = check(fleet, proxy.url, own_health(fleet, "stalled"))
        assert during.returncode == 0, during.stdout
        time.sleep(max(0.0, STALLED_FOR_S - (time.monotonic() - began)))
        proxy.heal()
        healed = time.monotonic()
        runs_at_heal = runs_by(records_client, stalled)

        recovered_s = wait_until(
            lambda: resumed(records_client, stalled, runs_at_heal, healed),
            "the stalled worker consuming again",
            timeout_s=RECOVERY_BOUND_S + 10,
            log=stalled,
        )
        assert recovered_s is not None
        after = check(fleet, proxy.url, own_health(fleet, "stalled"))
        assert after.returncode == 0, after.stdout
        summaries = settle(records_client, sent, stalled, healthy)
    row = {
        "blackholed_for_s": STALLED_FOR_S,
        "lease_s": LEASE_S,
        "read_timeout_s": READ_TIMEOUT_S,
        **figures(records_client, sent, stalled, healthy),
        "consuming_again_after_heal_s": round(recovered_s, 1),
        "summaries": summaries,
    }
    assert_row("blackhole-one-of-two", row, summaries, (stalled, healthy))
    assert recovered_s <= RECOVERY_BOUND_S, row


@pytest.mark.timeout(limit_s(120))
def test_sigstop_longer_than_the_lease_then_sigcont_loses_nothing(
    fleet: Fleet, redis_server: RedisServer, records_client: redis.Redis
) -> None:
    stalled = fleet.start(redis_server.url, *OPTIONS, env=own_health(fleet, "stalled"))
    healthy = fleet.start(redis_server.url, *OPTIONS)
    sent = [f"sigstop-{number}" for number in range(LOAD)]
    send(records_client, [{"id": message_id, "sleep_s": HANDLER_S} for message_id in sent])
    wait_until(
        lambda: both_busy(records_client, stalled, healthy), "both workers busy", log=stalled
    )

    stalled.send_signal(signal.SIGSTOP)
    began = time.monotonic()
    try:
        wait_until(
            lambda: redelivered(healthy) > 0,
            "the other worker redelivering the stopped worker's messages",
            timeout_s=LEASE_S + 20,
            log=healthy,
        )
        # The stopped worker's health record goes stale: --check says so.
        stale = check_until(
            fleet, redis_server.url, own_health(fleet, "stalled"), 1, "--check failing", stalled
        )
        assert "hung or stopped" in stale.stdout, stale.stdout
        time.sleep(max(0.0, STALLED_FOR_S - (time.monotonic() - began)))
        runs_at_stop = runs_by(records_client, stalled)
    finally:
        stalled.send_signal(signal.SIGCONT)
    continued = time.monotonic()

    resumed_s = wait_until(
        lambda: resumed(records_client, stalled, runs_at_stop, continued),
        "the stopped worker consuming again",
        log=stalled,
    )
    assert resumed_s is not None
    check_until(
        fleet, redis_server.url, own_health(fleet, "stalled"), 0, "--check healthy", stalled
    )
    summaries = settle(records_client, sent, stalled, healthy)
    row = {
        "stopped_for_s": STALLED_FOR_S,
        "lease_s": LEASE_S,
        "message_timeout_s": MESSAGE_TIMEOUT_S,
        **figures(records_client, sent, stalled, healthy),
        "consuming_again_after_sigcont_s": round(resumed_s, 1),
        "summaries": summaries,
    }
    assert_row("sigstop-one-of-two", row, summaries, (stalled, healthy))
