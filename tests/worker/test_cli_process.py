"""``runworker`` as a real process: signals, drain, Redis outages, start-up errors, supervisor."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.redis_server import RedisServer
from tests.worker.process_helpers import (
    CHANNEL_KEY,
    INFLIGHT_KEY,
    PROJECT_DIR,
    REPO_ROOT,
    TLSRedisServer,
    WorkerProcess,
    done_ids,
    make_tls_files,
    manage_command,
    parent_pid,
    queued_ids,
    records,
    runworker_command,
    send_tasks,
    started_ids,
    wait_until,
    worker_env,
)
from tests.worker.project.consumers import DONE_KEY, TASKS_CHANNEL
from worker.cli.supervisor import STABLE_RUN_S

pytestmark = pytest.mark.e2e

# The start-up line of one worker process, e.g. "[123] Worker host:123:ab12 consuming cw-tasks".
STARTED = rf"\[(?P<pid>\d+)\] Worker \S+ consuming {TASKS_CHANNEL} \(concurrency"
DELIVERY_MODES = ["at-least-once", "at-most-once"]


class Processes:
    """Starts worker processes for one test and kills whatever is left at its end."""

    def __init__(self) -> None:
        self.started: list[WorkerProcess] = []

    def start(
        self, command: Sequence[str], env: Mapping[str, str], cwd: Path = REPO_ROOT
    ) -> WorkerProcess:
        process = WorkerProcess(command, env, cwd)
        self.started.append(process)
        return process

    def runworker(self, host: Mapping[str, Any], *args: str) -> WorkerProcess:
        """``runworker [args] cw-tasks`` on ``host``, once its start-up line is logged."""
        worker = self.start(runworker_command(*args, TASKS_CHANNEL), worker_env(host))
        worker.wait_for_line(STARTED)
        return worker


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    for process in started.started:
        process.close()


@pytest.fixture
def host(redis_url: str) -> dict[str, Any]:
    return {"address": redis_url}


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as connection:
        yield connection


def stop(worker: WorkerProcess, *, timeout_s: float = 30.0) -> int:
    worker.send_signal(signal.SIGTERM)
    return worker.wait_exit(timeout_s=timeout_s)


def counters(worker: WorkerProcess, *names: str) -> dict[str, int]:
    summary = worker.summary()
    return {name: summary[name] for name in names}


def run_once(command: Sequence[str], env: Mapping[str, str], cwd: Path) -> tuple[int, list[str]]:
    """Run a command that should end by itself: its exit code and output lines."""
    result = subprocess.run(
        list(command), env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=60
    )
    return result.returncode, (result.stdout + result.stderr).splitlines()


# Signals and the phased shutdown


@pytest.mark.redis
@pytest.mark.parametrize("delivery", DELIVERY_MODES)
def test_sigterm_finishes_in_flight_handlers_and_returns_prefetched_messages(
    processes: Processes, host: dict[str, Any], client: redis.Redis, delivery: str
) -> None:
    worker = processes.runworker(host, "--concurrency", "2", "--delivery", delivery)
    sent = [f"m{number:02d}" for number in range(20)]
    send_tasks(host, [{"id": message_id, "sleep_s": 2} for message_id in sent])
    # Two handlers busy and two more messages prefetched: the rest is still in Redis.
    wait_until(
        lambda: len(started_ids(client)) == 2 and client.zcard(CHANNEL_KEY) == 16,
        "two handlers to start and two messages to be prefetched",
        log=worker,
    )

    assert stop(worker) == 0

    summary = worker.summary()
    assert counters(worker, "received", "completed", "failed", "invalid", "returned") == {
        "received": 4,
        "completed": 2,
        "failed": 0,
        "invalid": 0,
        "returned": 2,
    }
    assert summary["cancelled"] == 0
    assert sorted(done_ids(client)) == sorted(started_ids(client)) == sent[:2]
    assert client.zcard(CHANNEL_KEY) == len(sent) - summary["completed"] - summary["cancelled"]
    # Back at the head of the channel, in order: the next worker starts where this one left.
    assert queued_ids(client) == sent[2:]
    assert client.zcard(INFLIGHT_KEY) == 0
    worker.wait_for_line(rf"Returned 2 message\(s\) to channel '{TASKS_CHANNEL}'")


@pytest.mark.redis
def test_second_sigterm_exits_at_once_with_code_3(
    processes: Processes, host: dict[str, Any], client: redis.Redis
) -> None:
    worker = processes.runworker(host, "--concurrency", "1")
    send_tasks(host, [{"id": "stuck", "sleep_s": 60}])
    wait_until(lambda: started_ids(client) == ["stuck"], "the handler to start", log=worker)
    worker.send_signal(signal.SIGTERM)
    worker.wait_for_line(r"Received SIGTERM: finishing in-flight messages")

    began = time.monotonic()
    worker.send_signal(signal.SIGTERM)

    assert worker.wait_exit(timeout_s=10) == 3
    assert time.monotonic() - began < 5
    worker.wait_for_line(r"Received SIGTERM again: exiting at once")
    assert not worker.matches("Worker stopped:")
    # At-least-once: the message is still leased, so another worker redelivers it.
    assert client.zcard(INFLIGHT_KEY) == 1


@pytest.mark.redis
@pytest.mark.parametrize(("delivery", "returned"), [("at-least-once", 1), ("at-most-once", 0)])
def test_shutdown_timeout_cancels_a_stuck_handler_and_exits_cleanly(
    processes: Processes, host: dict[str, Any], client: redis.Redis, delivery: str, returned: int
) -> None:
    worker = processes.runworker(
        host, "--concurrency", "1", "--shutdown-timeout-s", "1", "--delivery", delivery
    )
    send_tasks(host, [{"id": "stuck", "sleep_s": 30}])
    wait_until(lambda: started_ids(client) == ["stuck"], "the handler to start", log=worker)

    began = time.monotonic()
    assert stop(worker) == 0

    # Up to one poll (1 s) to stop receiving, 1 s of drain, and process exit.
    assert time.monotonic() - began < 8
    worker.wait_for_line(r"Shutdown timeout of 1\.0 s reached; cancelling 1 handler\(s\)")
    assert counters(worker, "received", "completed", "failed", "returned", "cancelled") == {
        "received": 1,
        "completed": 0,
        "failed": 0,
        "returned": returned,
        "cancelled": 1,
    }
    assert done_ids(client) == []
    # At-least-once returns the cancelled message for the next worker; at-most-once drops it.
    assert queued_ids(client) == ["stuck"] * returned
    assert client.zcard(INFLIGHT_KEY) == 0


@pytest.mark.redis
def test_message_of_a_killed_worker_is_redelivered_to_the_next_one(
    processes: Processes, host: dict[str, Any], client: redis.Redis
) -> None:
    first = processes.runworker(host, "--concurrency", "1", "--lease-s", "2")
    send_tasks(host, [{"id": "orphan", "sleep_s": 1}])
    wait_until(lambda: started_ids(client) == ["orphan"], "the handler to start", log=first)

    first.send_signal(signal.SIGKILL)
    assert first.wait_exit() == -signal.SIGKILL
    assert client.zcard(INFLIGHT_KEY) == 1
    second = processes.runworker(host, "--concurrency", "1", "--lease-s", "2")

    # Once the dead worker's lease runs out (2 s), the live one puts the message back.
    wait_until(lambda: done_ids(client) == ["orphan"], "the redelivered message", log=second)
    assert started_ids(client) == ["orphan", "orphan"]
    second.wait_for_line(rf"Redelivering 1 message\(s\) on channel '{TASKS_CHANNEL}'")
    assert stop(second) == 0
    assert client.zcard(INFLIGHT_KEY) == client.zcard(CHANNEL_KEY) == 0


# Redis availability and idle connections


@pytest.mark.redis
@pytest.mark.parametrize("delivery", DELIVERY_MODES)
def test_worker_survives_a_redis_restart_and_loses_no_queued_message(
    processes: Processes, own_redis_server: RedisServer, delivery: str
) -> None:
    host = {"address": own_redis_server.url}
    worker = processes.runworker(
        host, "--concurrency", "1", "--prefetch", "1", "--delivery", delivery, "--lease-s", "2"
    )
    with own_redis_server.client() as client:
        send_tasks(host, [{"id": "slow", "sleep_s": 2}, {"id": "q1"}, {"id": "q2"}, {"id": "q3"}])
        wait_until(
            lambda: started_ids(client) == ["slow"] and client.zcard(CHANNEL_KEY) == 2,
            "'slow' to start with 'q1' prefetched",
            log=worker,
        )

    # "slow" cannot record its end and "q1" its start while Redis is down: both handlers fail.
    own_redis_server.kill()
    worker.wait_for_line(rf"Redis host 0 unreachable for channel '{TASKS_CHANNEL}'")
    own_redis_server.start()
    worker.wait_for_line(rf"Redis host 0 is back for channel '{TASKS_CHANNEL}'")
    send_tasks(host, [{"id": "after1"}, {"id": "after2"}])

    # q2 and q3 were in Redis, kept by its append-only file. Under at-least-once "slow" and
    # "q1" were leased, and are redelivered once their leases expire.
    expected = {"q2", "q3", "after1", "after2"}
    if delivery == "at-least-once":
        expected |= {"slow", "q1"}
    with own_redis_server.client() as client:
        wait_until(
            lambda: expected <= set(done_ids(client)), f"{sorted(expected)} done", log=worker
        )
        assert worker.process.poll() is None
        assert stop(worker) == 0
        assert client.zcard(CHANNEL_KEY) == client.zcard(INFLIGHT_KEY) == 0


@pytest.mark.redis
def test_sigterm_during_a_redis_outage_exits_cleanly_and_leased_messages_survive(
    processes: Processes, own_redis_server: RedisServer
) -> None:
    host = {"address": own_redis_server.url}
    args = ("--concurrency", "1", "--prefetch", "1", "--lease-s", "2")
    worker = processes.runworker(host, *args)
    with own_redis_server.client() as client:
        send_tasks(host, [{"id": "slow", "sleep_s": 1}, {"id": "q1"}, {"id": "q2"}])
        wait_until(
            lambda: started_ids(client) == ["slow"] and client.zcard(CHANNEL_KEY) == 1,
            "'slow' to start with 'q1' prefetched",
            log=worker,
        )
    own_redis_server.kill()

    assert stop(worker, timeout_s=20) == 0
    worker.wait_for_line(
        rf"Could not return 1 message\(s\) to channel '{TASKS_CHANNEL}' on host 0: .*; "
        "their leases will expire and they will be redelivered"
    )

    own_redis_server.start()
    successor = processes.runworker(host, *args)
    with own_redis_server.client() as client:
        wait_until(
            lambda: {"slow", "q1", "q2"} <= set(done_ids(client)),
            "every message, after the leases expired",
            log=successor,
        )
    assert stop(successor) == 0


@pytest.mark.redis
@pytest.mark.timeout(90)
@pytest.mark.parametrize("delivery", DELIVERY_MODES)
def test_worker_idle_for_12_s_still_handles_the_next_message(
    processes: Processes, host: dict[str, Any], client: redis.Redis, delivery: str
) -> None:
    worker = processes.runworker(host, "--concurrency", "2", "--delivery", delivery)

    # Longer than redis-py's 5 s default read timeout and channels-redis's 5 s blocking pop.
    worker.assert_no_line(r" (WARNING|ERROR) ", during_s=12)
    send_tasks(host, [{"id": "late"}])

    wait_until(lambda: done_ids(client) == ["late"], "the message after idling", log=worker)
    assert stop(worker) == 0
    assert worker.summary()["completed"] == 1
    assert not worker.matches(r" (WARNING|ERROR) ")


# Event loops


@pytest.mark.redis
@pytest.mark.parametrize(
    ("loop", "running"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_runworker_handles_messages_and_drains_on_the_event_loop_it_is_given(
    processes: Processes, host: dict[str, Any], client: redis.Redis, loop: str, running: str
) -> None:
    worker = processes.runworker(host, "--loop", loop, "--concurrency", "2")
    worker.wait_for_line(rf"Worker \S+ consuming {TASKS_CHANNEL} .*, {running} event loop$")
    send_tasks(host, [{"id": "quick"}, {"id": "slow", "sleep_s": 1}])
    wait_until(lambda: "slow" in started_ids(client), "the slow handler to start", log=worker)

    assert stop(worker) == 0
    assert sorted(done_ids(client)) == ["quick", "slow"]
    assert worker.summary()["completed"] == 2


@pytest.mark.redis
def test_supervised_workers_run_on_the_event_loop_the_supervisor_was_given(
    processes: Processes, host: dict[str, Any]
) -> None:
    supervisor = processes.start(
        runworker_command("--processes", "2", "--loop", "asyncio", TASKS_CHANNEL),
        worker_env(host),
    )

    supervisor.wait_for_lines(rf"Worker \S+ consuming {TASKS_CHANNEL} .*, asyncio event loop$", 2)
    assert not supervisor.matches("uvloop event loop")
    assert stop(supervisor) == 0


def hide_uvloop(directory: Path) -> dict[str, str]:
    """A worker environment in which ``import uvloop`` fails, as where it is not installed."""
    package = directory / "uvloop"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('No module named uvloop')\n")
    env = worker_env()
    env["PYTHONPATH"] = os.pathsep.join([str(directory), env["PYTHONPATH"]])
    return env


def test_runworker_loop_uvloop_without_uvloop_is_a_one_line_configuration_error(
    tmp_path: Path,
) -> None:
    code, lines = run_once(
        runworker_command("--loop", "uvloop", TASKS_CHANNEL), hide_uvloop(tmp_path), tmp_path
    )

    assert code == 2, lines
    assert len(lines) == 1, lines
    assert re.search(
        r" ERROR worker \[\d+\] --loop uvloop needs the uvloop package, which is not installed",
        lines[0],
    ), lines[0]


@pytest.mark.redis
def test_runworker_without_uvloop_runs_on_asyncio_by_default(
    processes: Processes, host: dict[str, Any], client: redis.Redis, tmp_path: Path
) -> None:
    env = hide_uvloop(tmp_path) | {"REDIS_URL": host["address"]}
    worker = processes.start(runworker_command(TASKS_CHANNEL), env)
    worker.wait_for_line(rf"Worker \S+ consuming {TASKS_CHANNEL} .*, asyncio event loop$")
    send_tasks(host, [{"id": "no-uvloop"}])

    wait_until(lambda: done_ids(client) == ["no-uvloop"], "the message", log=worker)
    assert stop(worker) == 0


# Django integration


@pytest.mark.redis
def test_manage_py_runworker_handles_a_message_and_stops_on_sigterm(
    processes: Processes, host: dict[str, Any], client: redis.Redis
) -> None:
    worker = processes.start(
        manage_command("runworker", TASKS_CHANNEL), worker_env(host), cwd=PROJECT_DIR
    )
    # channel-worker's start-up line, not Channels' "Running worker for channels".
    worker.wait_for_line(STARTED)
    send_tasks(host, [{"id": "via-manage-py"}])

    wait_until(lambda: done_ids(client) == ["via-manage-py"], "the message", log=worker)
    assert stop(worker) == 0
    assert worker.summary()["completed"] == 1


@pytest.mark.parametrize(("order", "warned"), [("channels-first", True), ("worker-first", False)])
def test_manage_py_check_warns_when_channels_shadows_runworker(order: str, warned: bool) -> None:
    code, lines = run_once(
        manage_command("check"), worker_env(CW_TEST_APPS_ORDER=order), PROJECT_DIR
    )

    assert code == 0, lines
    output = "\n".join(lines)
    assert ("channel_worker.W001" in output) is warned, output
    if warned:
        assert "'channels' comes before 'worker' in INSTALLED_APPS" in output
        assert "HINT: Move 'worker' above 'channels' in INSTALLED_APPS." in output
    else:
        assert "System check identified no issues" in output


@pytest.mark.parametrize(
    ("switches", "channel", "problem"),
    [
        pytest.param(
            {"CW_TEST_LAYER": "none"},
            TASKS_CHANNEL,
            r"No channel layer 'default': CHANNEL_LAYERS has no such alias\.",
            id="no-channel-layers",
        ),
        pytest.param(
            {"CW_TEST_LAYER": "memory"},
            TASKS_CHANNEL,
            r"Channel layer 'default' is channels\.layers\.InMemoryChannelLayer, which "
            r"runworker cannot serve: it lives inside one process",
            id="in-memory-layer",
        ),
        pytest.param(
            {"CW_TEST_LAYER": "pubsub"},
            TASKS_CHANNEL,
            r"Channel layer 'default' is channels_redis\.pubsub\.RedisPubSubChannelLayer, "
            r"which runworker cannot serve: it delivers every message to every subscriber",
            id="pubsub-layer",
        ),
        pytest.param(
            {},
            "cw-unknown",
            r"No application for channel\(s\) 'cw-unknown' in the ASGI application's "
            rf"ChannelNameRouter; known channels: '{TASKS_CHANNEL}'\.",
            id="unserved-channel",
        ),
        pytest.param(
            {"DJANGO_SETTINGS_MODULE": ""},
            TASKS_CHANNEL,
            r"No Django settings: pass --settings mysite.settings .* or set DJANGO_SETTINGS_MODULE",
            id="no-settings-module",
        ),
        pytest.param(
            {"DJANGO_SETTINGS_MODULE": "cw_no_such_settings"},
            TASKS_CHANNEL,
            r"Cannot import the settings module 'cw_no_such_settings'",
            id="missing-settings-module",
        ),
    ],
)
def test_runworker_refuses_to_start_with_one_line_naming_the_problem(
    switches: dict[str, str], channel: str, problem: str, tmp_path: Path
) -> None:
    # An empty switch value stands for "unset".
    env = {key: value for key, value in worker_env(**switches).items() if value}
    code, lines = run_once(runworker_command(channel), env, tmp_path)

    assert code == 2, lines
    assert len(lines) == 1, lines
    assert re.search(r" ERROR worker \[\d+\] " + problem, lines[0]), lines[0]


def test_manage_py_runworker_reports_a_configuration_error_with_exit_code_2() -> None:
    code, lines = run_once(
        manage_command("runworker", TASKS_CHANNEL),
        worker_env(CW_TEST_LAYER="memory"),
        PROJECT_DIR,
    )

    assert code == 2, lines
    assert lines == [
        "CommandError: Channel layer 'default' is channels.layers.InMemoryChannelLayer, which "
        "runworker cannot serve: it lives inside one process, so messages sent by your web "
        "server never reach it. Use channels_redis.core.RedisChannelLayer. Redis Cluster is not "
        "supported by channels-redis; list several independent hosts in 'hosts' to shard "
        "channels instead."
    ]


# Redis connection options


@pytest.fixture
def password_redis_server() -> Iterator[RedisServer]:
    server = RedisServer(password="s3cret")
    server.start()
    yield server
    server.cleanup()


@pytest.mark.redis
def test_password_protected_redis_works_and_the_password_is_never_logged(
    processes: Processes, password_redis_server: RedisServer
) -> None:
    host = {"address": password_redis_server.url}
    assert ":s3cret@" in host["address"]
    worker = processes.start(
        runworker_command("--log-level", "DEBUG", TASKS_CHANNEL), worker_env(host)
    )

    started = worker.wait_for_line(STARTED)
    assert f"redis://***@127.0.0.1:{password_redis_server.port}/0" in started.string
    send_tasks(host, [{"id": "authenticated"}])
    with password_redis_server.client() as client:
        wait_until(lambda: done_ids(client) == ["authenticated"], "the message", log=worker)
    assert stop(worker) == 0
    assert "s3cret" not in worker.output


@pytest.fixture
def tls_redis_server(tmp_path: Path) -> Iterator[TLSRedisServer]:
    server = TLSRedisServer(*make_tls_files(tmp_path))
    server.start()
    yield server
    server.cleanup()


@pytest.mark.redis
def test_tls_redis_with_a_verified_certificate_works(
    processes: Processes, tls_redis_server: TLSRedisServer
) -> None:
    host = tls_redis_server.host
    worker = processes.runworker(host, "--concurrency", "2")

    assert worker.matches(rf" on rediss://127\.0\.0\.1:{tls_redis_server.port}/0\b")
    send_tasks(host, [{"id": "over-tls"}])
    with tls_redis_server.client() as client:
        wait_until(lambda: done_ids(client) == ["over-tls"], "the message", log=worker)
    assert stop(worker) == 0
    assert worker.summary()["completed"] == 1


# --processes


def child_pids(worker: WorkerProcess, count: int) -> list[int]:
    """The pids of the first ``count`` worker processes that logged their start-up line."""
    return [int(match["pid"]) for match in worker.wait_for_lines(STARTED, count)]


@pytest.mark.redis
def test_supervisor_runs_two_workers_restarts_a_killed_one_and_stops_both(
    processes: Processes, host: dict[str, Any], client: redis.Redis
) -> None:
    supervisor = processes.start(
        runworker_command(
            "--processes", "2", "--concurrency", "1", "--prefetch", "1", TASKS_CHANNEL
        ),
        worker_env(host),
    )
    announced = supervisor.wait_for_line(r"Supervisor started 2 worker processes: (\d+), (\d+)")
    children = {int(announced[1]), int(announced[2])}
    assert set(child_pids(supervisor, 2)) == children
    # Each child holds at most two messages at a time, so both must take part.
    send_tasks(host, [{"id": f"m{number}", "sleep_s": 0.2} for number in range(8)])
    wait_until(lambda: len(done_ids(client)) == 8, "eight messages", log=supervisor)
    assert {entry["pid"] for entry in records(client, DONE_KEY)} == children

    victim = min(children)
    os.kill(victim, signal.SIGKILL)
    supervisor.wait_for_line(rf"Worker process {victim} exited with code -9; restarting it")
    replacement = child_pids(supervisor, 3)[2]
    assert replacement not in children

    assert stop(supervisor) == 0
    supervisor.wait_for_lines(r"Worker stopped: received=\d+ completed=\d+ failed=0", 2)
    supervisor.wait_for_line(r"Supervisor stopped; worker exit codes \[0, 0\]")


@pytest.mark.redis
def test_supervisor_stopped_while_restarting_a_child_stops_cleanly(
    processes: Processes, host: dict[str, Any]
) -> None:
    supervisor = processes.start(
        runworker_command("--processes", "2", TASKS_CHANNEL), worker_env(host)
    )
    victim = child_pids(supervisor, 2)[0]
    os.kill(victim, signal.SIGKILL)
    # Logged before the restart backoff (0.5 s): the signal arrives while the supervisor waits.
    supervisor.wait_for_line(rf"Worker process {victim} exited with code -9; restarting it")

    assert stop(supervisor, timeout_s=15) == 0
    supervisor.wait_for_line(r"Supervisor stopped; worker exit codes \[(-9, 0|0, -9)\]")
    assert len(supervisor.matches(STARTED)) == 2, "no replacement after the stop signal"


@pytest.mark.redis
def test_ctrl_c_in_a_terminal_drains_supervised_workers_instead_of_forcing_them(
    processes: Processes, host: dict[str, Any]
) -> None:
    supervisor = processes.start(
        runworker_command("--processes", "2", TASKS_CHANNEL), worker_env(host)
    )
    child_pids(supervisor, 2)

    # A terminal sends SIGINT to its whole foreground process group.
    os.killpg(supervisor.pid, signal.SIGINT)

    assert supervisor.wait_exit() == 0
    supervisor.wait_for_lines(r"Worker stopped: ", 2)
    assert not supervisor.matches(r"exiting at once")


def children_of(pid: int) -> set[int]:
    """The running processes whose parent is ``pid`` (Linux)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and parent_pid(int(entry)) == pid:
            found.add(int(entry))
    return found


def new_child(supervisor: WorkerProcess, known: set[int]) -> int:
    """The pid of a child of ``supervisor`` not in ``known``, as soon as it exists."""
    fresh = wait_until(
        lambda: children_of(supervisor.pid) - known, "a new child process", log=supervisor
    )
    [pid] = fresh
    return pid


@pytest.mark.redis
def test_supervisor_restart_backoff_starts_afresh_after_a_child_ran_fine(
    processes: Processes, host: dict[str, Any]
) -> None:
    supervisor = processes.start(
        runworker_command("--processes", "2", TASKS_CHANNEL), worker_env(host)
    )
    known = set(child_pids(supervisor, 2))
    victim = min(known)
    # Two quick deaths in a row in one slot: the second restart waits longer.
    for restarts in (1, 2):
        os.kill(victim, signal.SIGKILL)
        supervisor.wait_for_line(
            rf"Worker process {victim} exited with code -9; restarting it in [\d.]+ s "
            rf"\(restart {restarts} in a row\)"
        )
        victim = new_child(supervisor, known)
        known.add(victim)

    # The replacement runs fine for a while, then dies: its slot's backoff starts again.
    supervisor.wait_for_line(rf"\[{victim}\] Worker \S+ consuming")
    up_since = time.monotonic()
    wait_until(
        lambda: time.monotonic() - up_since >= STABLE_RUN_S,
        "the replacement to run fine for a while",
        timeout_s=STABLE_RUN_S + 5,
        log=supervisor,
    )
    os.kill(victim, signal.SIGKILL)
    supervisor.wait_for_line(
        rf"Worker process {victim} exited with code -9; restarting it in 0\.5 s "
        r"\(restart 1 in a row\)"
    )
    assert stop(supervisor) == 0


@pytest.mark.redis
def test_supervisor_stopped_while_a_replacement_child_starts_exits_0(
    processes: Processes, host: dict[str, Any]
) -> None:
    supervisor = processes.start(
        runworker_command("--processes", "2", TASKS_CHANNEL), worker_env(host)
    )
    first = child_pids(supervisor, 2)
    os.kill(first[0], signal.SIGKILL)
    new_child(supervisor, set(first))

    # The replacement is still importing the project: the stop reaches it before its handlers.
    assert stop(supervisor) == 0
    supervisor.wait_for_line(r"Supervisor stopped; worker exit codes ")
