"""Faults that are not a clean lost connection, with real redis-server and ``runworker`` processes.

Redis refusing writes (MISCONF, READONLY, BUSY) produced for real, connections reset by a TCP
proxy, a wrong password and a Redis that is not there at start. The consumers of the faults
project record what they handle on another redis-server than the layer's, so a fault of the
layer's Redis never touches the figures. ``pytest tests/faults -s`` prints the figures of the
delivery page's fault table.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import redis

from tests.faults.lengths import (
    CLEAN_AFTER,
    MISCONF_UNDER_FAILURES_S,
    REFUSALS,
    REFUSALS_LEASE_S,
    RESET_EVERY_S,
    RESET_HANDLER_S,
    RESETS_FOR_S,
    UNDER_RESETS,
    limit_s,
)
from tests.faults.proxy import FaultProxy
from tests.redis_server import RedisServer
from tests.worker.faults_project.consumers import CHANNEL
from tests.worker.process_helpers import WorkerProcess, runworker_command, wait_until
from tests.worker.test_faults import (
    KEYS,
    REPO_ROOT,
    Fleet,
    records,
    report,
    send,
    size,
    stop,
)

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

# Writable by nobody, root included, so a BGSAVE there fails and Redis answers MISCONF.
UNWRITABLE_DIR = "/proc"


@pytest.fixture
def layer_server() -> Iterator[RedisServer]:
    """The layer's own redis-server, whose persistence directory a test may change."""
    server = RedisServer("--enable-protected-configs", "yes")
    server.start()
    yield server
    server.cleanup()


def handler_runs(client: redis.Redis, prefix: str) -> Counter[str]:
    """Handler runs per message id, for the ids that start with ``prefix``."""
    return Counter(entry["id"] for entry in records(client) if entry["id"].startswith(prefix))


def check(
    fleet: Fleet, url: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``runworker --check faults`` beside the fleet's workers (``env`` as for ``Fleet.start``)."""
    return subprocess.run(
        runworker_command("--check", CHANNEL),
        env=fleet.env(url) | dict(env or {}),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def persistence(client: redis.Redis) -> dict[str, object]:
    info: dict[str, object] = client.info("persistence")
    return info


# The faults, each produced by Redis itself.


@contextlib.contextmanager
def misconf(client: redis.Redis, log: WorkerProcess) -> Iterator[str]:
    """A failed background save with stop-writes-on-bgsave-error: writes answer MISCONF."""
    original_dir = str(client.config_get("dir")["dir"])
    client.config_set("save", "3600 1")
    client.config_set("stop-writes-on-bgsave-error", "yes")
    client.config_set("dir", UNWRITABLE_DIR)
    client.bgsave()
    wait_until(
        lambda: (
            persistence(client)["rdb_last_bgsave_status"] == "err"
            and not persistence(client)["rdb_bgsave_in_progress"]
        ),
        "a failed background save",
        log=log,
    )
    try:
        yield "MISCONF"
    finally:
        client.config_set("dir", original_dir)
        client.bgsave()
        wait_until(
            lambda: persistence(client)["rdb_last_bgsave_status"] == "ok",
            "a good background save",
            log=log,
        )


@contextlib.contextmanager
def readonly(client: redis.Redis, master: RedisServer) -> Iterator[str]:
    """The endpoint turned into a replica of another server: writes answer READONLY."""
    client.replicaof("127.0.0.1", str(master.port))
    try:
        yield "ReadOnlyError"
    finally:
        client.replicaof("NO", "ONE")


@contextlib.contextmanager
def busy(server: RedisServer, client: redis.Redis, log: WorkerProcess) -> Iterator[str]:
    """Another client's endless script: every command answers BUSY until SCRIPT KILL."""
    client.config_set("busy-reply-threshold", 100)

    def run_script() -> None:
        with server.client() as other, contextlib.suppress(redis.ResponseError):
            other.eval("while true do end", 0)

    script = threading.Thread(target=run_script, name="busy script")
    script.start()

    def answers_busy() -> bool:
        try:
            client.ping()
        except redis.ResponseError as error:
            return str(error).startswith("BUSY")
        return False

    wait_until(answers_busy, "BUSY replies", log=log)
    try:
        yield "BUSY"
    finally:
        wait_until(lambda: _script_killed(client), "the script killed", log=log)
        script.join(10)


def _script_killed(client: redis.Redis) -> bool:
    try:
        client.script_kill()
    except redis.ResponseError as error:
        # "NOTBUSY": it has already ended.
        return "NOTBUSY" in str(error)
    return True


# Rows of the fault table


BATCH = 300
CONCURRENCY = "10"
LEASE_S = f"{REFUSALS_LEASE_S:g}"


@pytest.mark.timeout(limit_s(180))
def test_misconf_readonly_and_busy_with_300_messages_in_flight_run_each_about_once(
    fleet: Fleet, layer_server: RedisServer, records_client: redis.Redis
) -> None:
    master = RedisServer()
    master.start()
    worker = fleet.start(
        layer_server.url,
        *("--lease-s", LEASE_S, "--concurrency", CONCURRENCY, "--prefetch", str(BATCH)),
        *("--health-interval-s", "0.3"),
    )
    figures: dict[str, dict[str, object]] = {}
    try:
        with layer_server.client() as layer:
            for kind, held_s in REFUSALS:
                ids = [f"{kind}-{number}" for number in range(BATCH)]
                send(layer, [{"id": message_id, "sleep_s": 0.02} for message_id in ids])
                # All taken (the prefetch holds the batch), some handled: the rest finish and
                # are acknowledged while Redis refuses.
                wait_until(
                    lambda kind=kind: (
                        size(layer, KEYS.queue) == 0  # type: ignore[misc]
                        and sum(handler_runs(records_client, kind).values()) >= 30
                    ),
                    f"the {kind} batch taken",
                    log=worker,
                )
                faults: dict[str, Callable[[], contextlib.AbstractContextManager[str]]] = {
                    "misconf": lambda: misconf(layer, worker),
                    "readonly": lambda: readonly(layer, master),
                    "busy": lambda: busy(layer_server, layer, worker),
                }
                with faults[kind]() as reason:
                    began = time.monotonic()
                    unhealthy = _unhealthy_check(fleet, layer_server.url, reason, worker)
                    assert "is unhealthy: Redis host 0" in unhealthy, unhealthy
                    # Held for its length, whatever the check above took.
                    time.sleep(max(0.0, held_s - (time.monotonic() - began)))
                wait_until(
                    lambda kind=kind: (
                        len(handler_runs(records_client, kind)) == BATCH  # type: ignore[misc]
                        and size(layer, KEYS.inflight) == 0
                        and size(layer, KEYS.queue) == 0
                    ),
                    f"the {kind} batch handled and acknowledged",
                    timeout_s=40,
                    log=worker,
                )
                runs = handler_runs(records_client, kind)
                figures[kind] = {
                    "held_s": held_s,
                    "sent": BATCH,
                    "handler_runs": sum(runs.values()),
                    "dead_lettered": size(layer, KEYS.dead),
                    "lost": BATCH - len(runs),
                }
                assert check(fleet, layer_server.url).returncode == 0
            counters = stop(worker)
            dead = size(layer, KEYS.dead)
    finally:
        master.cleanup()
    report("redis-refusals", {**figures, "summary": counters})
    assert dead == 0
    for kind, row in figures.items():
        assert row["lost"] == 0, (kind, row)
        assert int(str(row["handler_runs"])) <= 1.05 * BATCH, (kind, row)
    assert not worker.matches("Traceback"), worker.output


def _unhealthy_check(fleet: Fleet, url: str, reason: str, log: WorkerProcess) -> str:
    """Wait until ``--check`` exits 1 naming ``reason``; its output line."""
    result = wait_until(
        lambda: (found := check(fleet, url)).returncode == 1 and reason in found.stdout and found,
        f"--check unhealthy naming {reason}",
        log=log,
    )
    assert not isinstance(result, bool)
    return result.stdout.strip()


@pytest.mark.timeout(limit_s(120))
def test_misconf_under_failing_handlers_then_100_more_messages_are_all_handled(
    fleet: Fleet, layer_server: RedisServer, records_client: redis.Redis
) -> None:
    held_s = MISCONF_UNDER_FAILURES_S
    worker = fleet.start(
        layer_server.url, "--lease-s", LEASE_S, "--concurrency", "4", "--health-interval-s", "0.3"
    )
    with layer_server.client() as layer:
        # Each handler writes to the layer's Redis after 1 s, so each fails under MISCONF and
        # its retry must be scheduled while Redis refuses writes.
        during = [
            {"id": f"during-{number}", "sleep_s": 1.0, "write_layer": True} for number in range(4)
        ]
        send(layer, during)
        wait_until(
            lambda: size(layer, KEYS.queue) == 0 and size(layer, KEYS.inflight) == 4,
            "every slot busy",
            log=worker,
        )
        with misconf(layer, worker):
            began = time.monotonic()
            _unhealthy_check(fleet, layer_server.url, "MISCONF", worker)
            time.sleep(max(0.0, held_s - (time.monotonic() - began)))
        after = [{"id": f"after-{number}"} for number in range(100)]
        send(layer, after)
        wait_until(
            lambda: (
                len(handler_runs(records_client, "after-")) == 100
                and len(handler_runs(records_client, "during-")) == 4
                and size(layer, KEYS.inflight) == 0
            ),
            "every message handled after the outage",
            timeout_s=30,
            log=worker,
        )
        dead = size(layer, KEYS.dead)
    counters = stop(worker)
    entries = records(records_client)
    report(
        "misconf-failing-handlers",
        {
            "held_s": held_s,
            "sent_after": 100,
            "handled_after": len(handler_runs(records_client, "after-")),
            "dead_lettered": dead,
            "summary": counters,
        },
    )
    assert dead == 0
    # One failed attempt under MISCONF, then one that succeeded: the wait for Redis, with the
    # lease kept alive meanwhile, cost no attempt.
    assert (
        sorted(entry["attempt"] for entry in entries if entry["id"].startswith("during-"))
        == [2] * 4
    )
    assert all(entry["attempt"] == 1 for entry in entries if entry["id"].startswith("after-"))
    # The handlers' own failures are logged with their tracebacks; no task of the worker died.
    assert not worker.matches("died unexpectedly"), worker.output


# Connections reset by a proxy


@pytest.mark.timeout(limit_s(180))
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_connections_reset_every_half_second_under_two_workers_lose_and_dead_letter_nothing(
    fleet: Fleet, redis_server: RedisServer, records_client: redis.Redis, loop: str
) -> None:
    with FaultProxy(redis_server.port) as proxy:
        options = (
            *("--lease-s", "5", "--concurrency", CONCURRENCY, "--health-interval-s", "0.5"),
            *("--loop", loop),
        )
        workers = [fleet.start(proxy.url, *options) for _ in range(2)]
        first, second = workers
        ids = [f"reset-{number}" for number in range(UNDER_RESETS)]
        send(records_client, [{"id": message_id, "sleep_s": RESET_HANDLER_S} for message_id in ids])
        stop_resets = threading.Event()

        def keep_resetting() -> None:
            deadline = time.monotonic() + RESETS_FOR_S
            while time.monotonic() < deadline and not stop_resets.wait(RESET_EVERY_S):
                proxy.reset()

        resetter = threading.Thread(target=keep_resetting, name="resetter")
        resetter.start()
        try:
            resetter.join(RESETS_FOR_S + 5)
        finally:
            stop_resets.set()
        clean = [f"clean-{number}" for number in range(CLEAN_AFTER)]
        send(records_client, [{"id": message_id} for message_id in clean])
        sent = ids + clean
        wait_until(
            lambda: (
                len(handler_runs(records_client, "")) == len(sent)
                and size(records_client, KEYS.inflight) == 0
                and size(records_client, KEYS.queue) == 0
            ),
            "every message handled and acknowledged",
            timeout_s=90,
            log=first,
        )
        summaries = [stop(worker) for worker in workers]
        runs = handler_runs(records_client, "")
        figures = {
            "reset_every_s": RESET_EVERY_S,
            "resets_for_s": RESETS_FOR_S,
            "connections_reset": proxy.resets,
            "sent": len(sent),
            "handler_runs": sum(runs.values()),
            "dead_lettered": size(records_client, KEYS.dead),
            "lost": len(sent) - len(runs),
            "handled_on_a_later_attempt": sum(
                entry["attempt"] > 1 for entry in records(records_client)
            ),
            "summaries": summaries,
        }
    report(f"resets-{loop}", figures)
    assert proxy.resets > 0
    assert figures["dead_lettered"] == figures["lost"] == 0
    assert sum(runs.values()) <= 1.2 * len(sent), figures
    # No worker died, so each message ran once: a finished message whose acknowledgement a
    # reset interrupted is acknowledged again, not redelivered when its lease runs out. (A pop
    # whose reply a reset lost is redelivered, but it never ran.)
    assert [message_id for message_id, count in runs.items() if count > 1] == [], figures
    for worker in (first, second):
        assert not worker.matches("Traceback"), worker.output


# First contact: credentials refused, Redis not there


@pytest.mark.timeout(60)
def test_wrong_password_is_one_configuration_line_naming_the_host_and_check_is_unhealthy(
    fleet: Fleet, tmp_path: Path
) -> None:
    server = RedisServer(password="right-secret")
    server.start()
    try:
        url = f"redis://:wrong-secret@127.0.0.1:{server.port}/0"
        fleet.extra_env = {}
        worker = fleet.start(url, "--health-interval-s", "0.3")
        line = worker.wait_for_line(r"refused the worker's credentials").string
        assert f"redis://***@127.0.0.1:{server.port}/0" in line
        assert "wrong-secret" not in worker.output
        assert "set the right password" in line
        unhealthy = _unhealthy_check(fleet, url, "refused the worker's credentials", worker)
        assert "wrong-secret" not in unhealthy
        # Retried quietly meanwhile: no traceback, no second line, no instance restarts.
        worker.assert_no_line(r"Traceback|failed before taking a message", during_s=3)
        assert len(worker.matches(r"outage .* refused the worker's credentials")) == 1
        assert stop(worker)["received"] == 0
    finally:
        server.cleanup()


@pytest.mark.timeout(60)
def test_redis_down_at_start_logs_one_warning_and_admin_commands_one_line(
    fleet: Fleet, tmp_path: Path
) -> None:
    from tests.redis_server import free_port

    url = f"redis://:hidden-secret@127.0.0.1:{free_port()}/0"
    fleet.extra_env = {}
    worker = fleet.start(url)
    worker.wait_for_line(r"Redis host 0 unreachable for channel 'faults'")
    worker.assert_no_line(r"Traceback|failed before taking a message|died", during_s=4)
    assert len(worker.matches("unreachable")) == 1, worker.output
    assert "hidden-secret" not in worker.output
    stop(worker)
    for command in (("status",), ("dead", "list", CHANNEL)):
        result = fleet.admin(url, *command)
        assert result.returncode == 1, result
        lines = (result.stdout + result.stderr).strip().splitlines()
        assert len(lines) == 1, result
        assert lines[0].startswith("channel-worker: Redis at redis://***@127.0.0.1:")
        assert "is unreachable" in lines[0]
        assert "hidden-secret" not in lines[0]
