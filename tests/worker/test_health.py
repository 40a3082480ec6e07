"""Health records and ``runworker --check``: in-process with the ``Worker``, then as processes."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from channels_redis.core import RedisChannelLayer
from django.core.management import call_command

from routing.types import ASGIApp, Receive, Scope, Send
from tests.redis_server import RedisServer
from tests.worker._inprocess import (
    Probe,
    cancel_and_wait,
    channel_app,
    make_worker,
    running,
    wait_until,
)
from tests.worker._ops import (
    OPS_PROJECT_DIR,
    OPS_SETTINGS,
    STARTED,
    Ops,
    runworker_command,
    stop,
    wait_for,
)
from tests.worker.ops_project.consumers import OPS_CHANNEL
from tests.worker.process_helpers import WorkerProcess
from worker.cli.exit_codes import EXIT_CONFIG, EXIT_CRASHED
from worker.config import ChannelConfig
from worker.consume.worker import Worker
from worker.management.commands.runworker import Command as RunworkerCommand
from worker.ops.health import HealthRecord, check
from worker.ops.health_files import find_settings_file
from worker.transport.keys import health_key
from worker.transport.pop_connection import PopConnection

# Stale after three intervals: short enough to see hangs quickly, long enough for a busy CI host.
INTERVAL_S = 0.5
EXPIRY_S = 3600
# Fast retries, so a failing message is dead-lettered within the test.
RETRYING = ChannelConfig(max_attempts=2, retry_backoff_min_s=0.01, retry_backoff_max_s=0.02)


def failing_on_demand(probe: Probe) -> ASGIApp:
    """Handles ``job.run`` through ``probe``; ``job.fail`` raises."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "job.fail":
                raise RuntimeError(f"job {message.get('n')} fails on demand")
            await probe.handle(scope, message)

    return application


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as connection:
        yield connection


def health_worker(
    probe: Probe,
    layer: RedisChannelLayer,
    directory: Path,
    channels: tuple[str, ...] = ("jobs",),
    config: ChannelConfig = RETRYING,
) -> Worker:
    application = failing_on_demand(probe)
    return make_worker(
        channel_app(dict.fromkeys(channels, application)),
        list(channels),
        layer,
        config,
        health_interval_s=INTERVAL_S,
        health_directory=directory,
    )


def local_record(directory: Path) -> HealthRecord | None:
    """This process's health record in ``directory``, None before the first one is written."""
    paths = list(directory.glob("*.json"))
    assert len(paths) <= 1, f"one worker, one record: {paths}"
    return HealthRecord.from_json(paths[0].read_text()) if paths else None


def files_in(directory: Path) -> list[Path]:
    return list(directory.iterdir())


async def first_record(directory: Path) -> HealthRecord:
    await wait_until(lambda: local_record(directory) is not None, what="the first health record")
    record = local_record(directory)
    assert record is not None
    return record


def redis_record(client: redis.Redis, layer: RedisChannelLayer, worker: Worker) -> Any:
    return client.get(health_key(layer.prefix, worker.worker_id))


# The local and Redis records


@pytest.mark.redis
async def test_health_record_is_refreshed_and_carries_counters_and_in_flight_work(
    layer: RedisChannelLayer, client: redis.Redis, tmp_path: Path
) -> None:
    probe = Probe()
    worker = health_worker(probe, layer, tmp_path)
    async with running(worker):
        first = await first_record(tmp_path)
        assert first.worker_id == worker.worker_id
        assert (first.pid, first.channels, first.interval_s) == (os.getpid(), ["jobs"], INTERVAL_S)
        assert (first.healthy, first.problem) == (True, None)
        assert first.event_loop in ("asyncio", "uvloop")
        assert first.started_at is not None
        assert first.started_at <= first.updated_at
        assert set(first.channel_settings["jobs"]) == {"concurrency", "delivery"}
        await wait_until(
            lambda: (
                (record := local_record(tmp_path)) is not None
                and record.updated_at > first.updated_at
            ),
            what="a refreshed record",
        )

        await layer.send("jobs", {"type": "job.run", "n": 1})
        await layer.send("jobs", {"type": "job.fail", "n": 2})
        await layer.send("jobs", {"type": "job.run", "n": 3})
        expected = {"received": 4, "completed": 2, "failed": 2, "retried": 1, "dead": 1}
        await wait_until(
            lambda: (
                (record := local_record(tmp_path)) is not None
                and {name: record.counters[name] for name in expected} == expected
            ),
            what=f"counters {expected}",
        )

        probe.gate.clear()
        await layer.send("jobs", {"type": "job.run", "n": 4})
        await wait_until(
            lambda: (
                (record := local_record(tmp_path)) is not None and record.in_flight == {"jobs": 1}
            ),
            what="one message in flight",
        )
        probe.gate.set()
        await wait_until(
            lambda: (
                (record := local_record(tmp_path)) is not None
                and record.in_flight == {"jobs": 0}
                and record.counters["completed"] == 3
            ),
            what="nothing in flight and three completed",
        )


def test_a_record_with_fields_of_a_later_release_still_counts() -> None:
    record = healthy_record()
    written = json.loads(record.to_json()) | {"added_later": {"x": 1}}
    assert HealthRecord.from_json(json.dumps(written)) == record


@pytest.mark.redis
async def test_redis_record_expires_about_three_intervals_after_its_last_refresh(
    layer: RedisChannelLayer, client: redis.Redis, tmp_path: Path
) -> None:
    worker = health_worker(Probe(), layer, tmp_path, config=ChannelConfig())
    async with running(worker):
        await wait_until(lambda: redis_record(client, layer, worker) is not None, what="the record")
        record = HealthRecord.from_json(redis_record(client, layer, worker))
        assert (record.worker_id, record.channels, record.healthy) == (
            worker.worker_id,
            ["jobs"],
            True,
        )
        ttl_ms: Any = client.pttl(health_key(layer.prefix, worker.worker_id))
        # Three intervals, in whole seconds for EX: 1.5 s rounds to 2 s.
        assert 1000 < ttl_ms <= 2000


@pytest.mark.redis
async def test_stop_removes_the_local_and_the_redis_record(
    layer: RedisChannelLayer, client: redis.Redis, tmp_path: Path
) -> None:
    worker = health_worker(Probe(), layer, tmp_path, config=ChannelConfig())
    async with running(worker):
        await first_record(tmp_path)
        await wait_until(lambda: redis_record(client, layer, worker) is not None, what="the record")

    assert files_in(tmp_path) == []
    assert redis_record(client, layer, worker) is None


# check()


@pytest.mark.redis
async def test_check_is_healthy_for_served_channels_and_names_a_missing_one(
    layer: RedisChannelLayer, tmp_path: Path
) -> None:
    worker = health_worker(Probe(), layer, tmp_path, channels=("jobs", "mail"))
    async with running(worker):
        await first_record(tmp_path)

        assert check(["jobs"], tmp_path) == (
            True,
            f"healthy: worker {worker.worker_id} serving jobs, mail",
        )
        assert check(["mail", "jobs"], tmp_path)[0]
        healthy, reason = check(["jobs", "sms"], tmp_path)
        assert not healthy
        assert reason == f"worker {worker.worker_id} does not serve 'sms' (serves 'jobs', 'mail')"


def test_check_without_a_worker_says_none_is_running(tmp_path: Path) -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    # The record of a worker killed with -9 stays behind; a dead pid does not count.
    leftover = HealthRecord(
        worker_id="host:1:dead",
        pid=exited.pid,
        channels=["jobs"],
        interval_s=INTERVAL_S,
        updated_at=time.time(),
        healthy=True,
    )
    (tmp_path / f"{exited.pid}.json").write_text(leftover.to_json())

    assert check(["jobs"], tmp_path) == (
        False,
        f"no running worker on this host (no live health record in {tmp_path})",
    )
    assert not check(["jobs"], tmp_path / "never-created")[0]


@pytest.mark.redis
async def test_check_fails_naming_the_channel_while_its_listener_keeps_crashing(
    layer: RedisChannelLayer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = health_worker(Probe(), layer, tmp_path, config=ChannelConfig())
    async with running(worker):
        await first_record(tmp_path)
        assert check(["jobs"], tmp_path)[0]

        async def broken_pop(self: PopConnection, count: int, lease_deadline: float = 0.0) -> Any:
            raise RuntimeError("pop is broken")

        monkeypatch.setattr(PopConnection, "pop", broken_pop)
        await wait_until(lambda: not check(["jobs"], tmp_path)[0], what="an unhealthy check")
        problem = "listener for channel 'jobs' on host 0 failed: RuntimeError: pop is broken"
        assert check(["jobs"], tmp_path) == (
            False,
            f"worker {worker.worker_id} is unhealthy: {problem}",
        )
        record = local_record(tmp_path)
        assert record is not None
        assert (record.healthy, record.problem) == (False, problem)

        # The listener is restarted with backoff, and healthy again once a poll succeeds.
        monkeypatch.undo()
        await wait_until(lambda: check(["jobs"], tmp_path)[0], 15, "a healthy check again")
        await layer.send("jobs", {"type": "job.run", "n": 1})
        await wait_until(lambda: worker.stats.completed == 1, what="the message handled")


@pytest.mark.redis
async def test_check_fails_naming_the_channel_when_its_listener_task_has_ended(
    layer: RedisChannelLayer, tmp_path: Path
) -> None:
    worker = health_worker(Probe(), layer, tmp_path, channels=("jobs", "mail"))
    async with running(worker):
        await first_record(tmp_path)
        assert check(["jobs", "mail"], tmp_path)[0]

        # Nothing public ends a listener task; a bug that lets one return would look like this.
        await cancel_and_wait(worker._runtimes["mail"].pollers[0])

        await wait_until(lambda: not check(["jobs"], tmp_path)[0], what="an unhealthy check")
        assert check(["jobs"], tmp_path) == (
            False,
            f"worker {worker.worker_id} is unhealthy: "
            "listener for channel 'mail' on host 0 has stopped",
        )


def begin_outage(server: RedisServer, outage: str) -> None:
    """Stop the server, or freeze it: connections are accepted but nothing is answered."""
    if outage == "stopped":
        server.stop()
        return
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)


def end_outage(server: RedisServer, outage: str) -> None:
    if outage == "stopped":
        server.start()
        return
    assert server.process is not None
    server.process.send_signal(signal.SIGCONT)


@pytest.mark.redis
@pytest.mark.parametrize("outage", ["stopped", "frozen"])
async def test_redis_outage_alone_keeps_the_worker_healthy_while_it_reconnects(
    own_redis_server: RedisServer, tmp_path: Path, outage: str
) -> None:
    layer = RedisChannelLayer(hosts=[own_redis_server.url], expiry=EXPIRY_S)
    probe = Probe()
    worker = health_worker(probe, layer, tmp_path, config=ChannelConfig())
    try:
        async with running(worker):
            await first_record(tmp_path)
            begin_outage(own_redis_server, outage)
            try:
                if outage == "stopped":
                    await wait_until(lambda: worker.stats.redis_errors > 0, what="the outage")
                # Four stale periods: the record keeps being refreshed and stays healthy.
                outage_began = time.time()
                while time.time() - outage_began < 4 * 3 * INTERVAL_S:
                    healthy, reason = check(["jobs"], tmp_path)
                    assert healthy, reason
                    await asyncio.sleep(0.05)
                record = local_record(tmp_path)
                assert record is not None
                assert record.healthy
                assert record.updated_at > outage_began
            finally:
                end_outage(own_redis_server, outage)

            await layer.send("jobs", {"type": "job.run", "n": 1})
            await wait_until(lambda: probe.finished == [1], 30, "the message after the outage")
            with own_redis_server.client() as client:
                await wait_until(
                    lambda: client.get(health_key(layer.prefix, worker.worker_id)) is not None,
                    what="the Redis record written again",
                )
    finally:
        await layer.close_pools()


# runworker --check as a process


@pytest.fixture
def ops(redis_url: str, tmp_path: Path) -> Iterator[Ops]:
    harness = Ops(redis_url, tmp_path)
    yield harness
    harness.close()


def check_until(
    ops: Ops, code: int, what: str, worker: WorkerProcess
) -> subprocess.CompletedProcess[str]:
    """Run ``runworker --check ops-jobs`` until it exits with ``code``; its last run."""

    def checked() -> subprocess.CompletedProcess[str] | None:
        result = ops.check(OPS_CHANNEL)
        return result if result.returncode == code else None

    return wait_for(checked, what, log=worker)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    assert result.stderr == ""
    return lines[0]


@pytest.mark.e2e
@pytest.mark.redis
def test_runworker_check_exits_0_while_a_worker_serves_the_channel_and_1_otherwise(
    ops: Ops,
) -> None:
    nothing = ops.check(OPS_CHANNEL)
    assert nothing.returncode == 1
    assert one_line(nothing) == (
        f"no running worker on this host (no live health record in {ops.health_dir})"
    )

    worker = ops.runworker("--health-interval-s", "1")
    healthy = check_until(ops, 0, "a healthy check", worker)
    assert one_line(healthy).startswith("healthy: worker ")
    assert one_line(healthy).endswith(f" serving {OPS_CHANNEL}")

    other = ops.check(OPS_CHANNEL, "ops-other")
    assert other.returncode == 1
    assert "does not serve 'ops-other'" in one_line(other)

    assert stop(worker) == 0
    after = ops.check(OPS_CHANNEL)
    assert after.returncode == 1
    assert one_line(after).startswith("no running worker on this host")


@pytest.mark.e2e
@pytest.mark.redis
def test_runworker_check_fails_while_the_worker_is_stopped_and_recovers_after_sigcont(
    ops: Ops,
) -> None:
    worker = ops.runworker("--health-interval-s", "0.5")
    check_until(ops, 0, "a healthy check", worker)

    worker.send_signal(signal.SIGSTOP)
    try:
        # Stale after three intervals (1.5 s) without a refresh.
        hung = check_until(ops, 1, "an unhealthy check", worker)
    finally:
        worker.send_signal(signal.SIGCONT)
    assert one_line(hung).endswith("(every 0.5 s expected): hung or stopped")

    recovered = check_until(ops, 0, "a healthy check after SIGCONT", worker)
    assert one_line(recovered).startswith("healthy: worker ")
    record = json.loads(next(ops.health_dir.glob("*.json")).read_text())
    assert record["pid"] == worker.pid
    assert stop(worker) == 0


# The local directory: private, this user's, never written or read through a link

NOBODY_UID = 65534
UNSAFE_REASONS = {
    "open": "has mode 0755, open to other users (expected 0700)",
    "link": "is a symbolic link",
    "foreign": f"is owned by uid {NOBODY_UID}, not by this user (uid {os.geteuid()})",
}
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")


def healthy_record(settings_module: str | None = None) -> HealthRecord:
    """A fresh, healthy record of this (live) process serving ``jobs``."""
    return HealthRecord(
        worker_id="host:1:planted",
        pid=os.getpid(),
        channels=["jobs"],
        interval_s=60.0,
        updated_at=time.time(),
        healthy=True,
        settings_module=settings_module or os.environ.get("DJANGO_SETTINGS_MODULE"),
    )


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    return path


def unsafe_dir(tmp_path: Path, unsafe: str) -> Path:
    """A health directory holding a healthy record, unsafe in the way ``unsafe`` names."""
    directory = private_dir(tmp_path / "planted")
    (directory / "1.json").write_text(healthy_record().to_json())
    if unsafe == "open":
        directory.chmod(0o755)
    elif unsafe == "foreign":
        os.chown(directory, NOBODY_UID, NOBODY_UID)
    elif unsafe == "link":
        link = tmp_path / "link"
        link.symlink_to(directory)
        return link
    return directory


def unsafe_cases() -> list[Any]:
    return [
        pytest.param(unsafe, marks=[needs_root] if unsafe == "foreign" else [])
        for unsafe in UNSAFE_REASONS
    ]


def no_worker(directory: Path) -> tuple[bool, str]:
    return False, f"no running worker on this host (no live health record in {directory})"


def test_check_counts_a_record_of_this_user_in_a_private_directory(tmp_path: Path) -> None:
    directory = private_dir(tmp_path / "health")
    (directory / "1.json").write_text(healthy_record().to_json())

    assert check(["jobs"], directory) == (True, "healthy: worker host:1:planted serving jobs")


@needs_root
def test_check_ignores_a_record_of_another_user(tmp_path: Path) -> None:
    directory = private_dir(tmp_path / "health")
    planted = directory / "1.json"
    planted.write_text(healthy_record().to_json())
    os.chown(planted, NOBODY_UID, NOBODY_UID)

    assert check(["jobs"], directory) == no_worker(directory)


def test_check_ignores_a_record_that_is_a_link(tmp_path: Path) -> None:
    directory = private_dir(tmp_path / "health")
    elsewhere = tmp_path / "fake.json"
    elsewhere.write_text(healthy_record().to_json())
    (directory / "1.json").symlink_to(elsewhere)

    assert check(["jobs"], directory) == no_worker(directory)


@pytest.mark.parametrize("unsafe", unsafe_cases())
def test_check_does_not_trust_a_directory_that_is_not_private_and_ours(
    tmp_path: Path, unsafe: str
) -> None:
    directory = unsafe_dir(tmp_path, unsafe)

    assert check(["jobs"], directory) == (
        False,
        f"health directory {directory} {UNSAFE_REASONS[unsafe]}: its health records are not "
        "trusted",
    )


@pytest.mark.redis
async def test_the_record_is_never_written_through_a_link_planted_at_its_name(
    layer: RedisChannelLayer, tmp_path: Path
) -> None:
    directory = private_dir(tmp_path / "health")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for name in (f"{os.getpid()}.json", f"{os.getpid()}.tmp"):
        (directory / name).symlink_to(victim)

    written = directory / f"{os.getpid()}.json"
    async with running(health_worker(Probe(), layer, directory)):
        await wait_until(lambda: not written.is_symlink(), what="a record in place of the link")
        assert victim.read_text() == "precious"
        assert HealthRecord.from_json(written.read_text()).pid == os.getpid()
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert victim.read_text() == "precious"


@pytest.mark.e2e
@pytest.mark.redis
@pytest.mark.parametrize("unsafe", unsafe_cases())
def test_runworker_refuses_a_health_directory_that_is_not_private_and_ours(
    ops: Ops, tmp_path: Path, unsafe: str
) -> None:
    directory = unsafe_dir(tmp_path, unsafe)
    before = sorted(path.name for path in directory.iterdir())
    worker = ops.start(
        runworker_command(OPS_CHANNEL), env=ops.env(CHANNEL_WORKER_HEALTH_DIR=str(directory))
    )

    assert worker.wait_exit() == EXIT_CONFIG
    refusal = f"health directory {directory} {UNSAFE_REASONS[unsafe]}: refusing to keep"
    assert len(worker.matches(re.escape(refusal))) == 1, worker.output
    assert sorted(path.name for path in directory.iterdir()) == before


# Records are per project: a probe counts only its own project's workers


def planted(directory: Path, name: str, channels: list[str], updated_ago_s: float = 0.0) -> None:
    """A record of this live process under ``name``, as a worker serving ``channels``."""
    record = dataclasses.replace(
        healthy_record(),
        worker_id=f"host:1:{name}",
        channels=channels,
        interval_s=1.0,
        updated_at=time.time() - updated_ago_s,
    )
    (directory / f"{name}.json").write_text(record.to_json())


def test_check_fails_when_one_of_two_processes_serving_the_channel_is_hung(
    tmp_path: Path,
) -> None:
    directory = private_dir(tmp_path / "health")
    planted(directory, "first", ["jobs"])
    planted(directory, "second", ["jobs"])
    assert check(["jobs"], directory) == (
        True,
        "healthy: 2 workers (host:1:first, host:1:second) serving jobs",
    )

    planted(directory, "second", ["jobs"], updated_ago_s=30)
    healthy, line = check(["jobs"], directory)
    assert not healthy
    assert line == (
        "worker host:1:second last reported 30 s ago (every 1 s expected): hung or stopped"
    )


def test_check_ignores_a_hung_worker_of_other_channels_and_counts_channels_served_together(
    tmp_path: Path,
) -> None:
    directory = private_dir(tmp_path / "health")
    planted(directory, "jobs", ["jobs"])
    planted(directory, "mail", ["mail"])
    planted(directory, "reports", ["reports"], updated_ago_s=30)

    assert check(["jobs", "mail"], directory) == (
        True,
        "healthy: 2 workers (host:1:jobs, host:1:mail) serving jobs, mail",
    )
    healthy, line = check(["jobs", "tasks.default"], directory)
    assert not healthy
    assert "does not serve 'tasks.default'" in line


def test_check_in_a_shared_directory_counts_only_records_of_its_settings_module(
    tmp_path: Path,
) -> None:
    directory = private_dir(tmp_path / "shared")
    (directory / "1.json").write_text(healthy_record("other_site.settings").to_json())

    assert check(["jobs"], directory, "mysite.settings") == no_worker(directory)
    assert check(["jobs"], directory, "other_site.settings")[0]


def settings_package(root: Path, *, as_package: bool = False) -> str:
    """``mysite/settings.py`` (or ``mysite/settings/__init__.py``) under ``root``; its path."""
    (root / "mysite").mkdir(parents=True, exist_ok=True)
    (root / "mysite" / "__init__.py").write_text("")
    path = root / "mysite" / "settings.py"
    if as_package:
        (root / "mysite" / "settings").mkdir()
        path = root / "mysite" / "settings" / "__init__.py"
    path.write_text("")
    return str(path.resolve())


def elsewhere_line(directory: Path, theirs: str, ours: str) -> str:
    return (
        f"no running worker of this project on this host: the 1 in {directory} import the "
        f"settings module from {theirs}, not {ours}: another project with a settings module of "
        "the same name (give each project its own CHANNEL_WORKER_HEALTH_DIR), or this one "
        "before it moved (restart its workers)"
    )


def test_check_tells_projects_apart_whose_settings_modules_share_a_name(tmp_path: Path) -> None:
    directory = private_dir(tmp_path / "shared")
    ours, theirs = settings_package(tmp_path / "ours"), settings_package(tmp_path / "theirs")
    their_record = dataclasses.replace(healthy_record("mysite.settings"), settings_file=theirs)
    (directory / "1.json").write_text(their_record.to_json())

    assert check(["jobs"], directory, "mysite.settings", ours) == (
        False,
        elsewhere_line(directory, theirs, ours),
    )
    our_record = dataclasses.replace(
        healthy_record("mysite.settings"), worker_id="host:2:ours", settings_file=ours
    )
    (directory / "2.json").write_text(our_record.to_json())
    assert check(["jobs"], directory, "mysite.settings", ours) == (
        True,
        "healthy: worker host:2:ours serving jobs",
    )


def test_check_counts_by_name_without_its_own_settings_file_or_a_records(tmp_path: Path) -> None:
    directory = private_dir(tmp_path / "shared")
    theirs = settings_package(tmp_path / "theirs")
    record = dataclasses.replace(healthy_record("mysite.settings"), settings_file=theirs)
    (directory / "1.json").write_text(record.to_json())
    # A probe that could not find its module: the name alone.
    assert check(["jobs"], directory, "mysite.settings", None)[0]
    # A record of a 0.1.0 worker, which names no file.
    (directory / "1.json").write_text(healthy_record("mysite.settings").to_json())
    assert check(["jobs"], directory, "mysite.settings", settings_package(tmp_path / "ours"))[0]


def test_manage_py_runworker_check_knows_its_project_by_the_settings_it_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = private_dir(tmp_path / "health")
    monkeypatch.setenv("CHANNEL_WORKER_HEALTH_DIR", str(directory))
    module = os.environ["DJANGO_SETTINGS_MODULE"]
    loaded = str(Path(str(sys.modules[module].__file__)).resolve())
    theirs = str(tmp_path / "theirs" / "settings.py")
    record = dataclasses.replace(healthy_record(module), settings_file=theirs)
    (directory / "1.json").write_text(record.to_json())

    out = io.StringIO()
    with pytest.raises(SystemExit) as stopped:
        call_command(RunworkerCommand(), "--check", "jobs", stdout=out)
    assert stopped.value.code == EXIT_CRASHED
    assert out.getvalue().strip() == elsewhere_line(directory, theirs, loaded)
    (directory / "1.json").write_text(dataclasses.replace(record, settings_file=loaded).to_json())
    out = io.StringIO()
    call_command(RunworkerCommand(), "--check", "jobs", stdout=out)
    assert out.getvalue().strip() == "healthy: worker host:1:planted serving jobs"


def test_the_settings_file_is_found_where_python_would_import_it_from(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    settings_package(first)
    # A package beside a module of the same name wins, as in Python's own import.
    package = settings_package(first, as_package=True)
    settings_package(second)
    search_path = [str(tmp_path / "elsewhere"), str(first), str(second)]

    assert find_settings_file("mysite.settings", search_path) == package
    assert find_settings_file("mysite.settings", [str(second), str(first)]) == str(
        (second / "mysite" / "settings.py").resolve()
    )
    assert find_settings_file("mysite.missing", search_path) is None
    assert find_settings_file("mysite.settings.sub", [str(second)]) is None
    assert find_settings_file(None, search_path) is None


@pytest.mark.e2e
@pytest.mark.redis
def test_runworker_check_counts_only_the_workers_of_its_own_project(ops: Ops) -> None:
    # The default location, under the harness's TMPDIR.
    env = {key: value for key, value in ops.env().items() if key != "CHANNEL_WORKER_HEALTH_DIR"}
    worker = ops.start(runworker_command("--health-interval-s", "0.5", OPS_CHANNEL), env=env)
    worker.wait_for_line(STARTED)
    base = ops.temp_dir / f"channel-worker-{os.geteuid()}"
    project = base / OPS_SETTINGS
    record_path = wait_for(
        lambda: next(project.glob("*.json"), None), "the worker's health record", log=worker
    )
    assert json.loads(record_path.read_text())["settings_module"] == OPS_SETTINGS
    modes = [stat.S_IMODE(path.stat().st_mode) for path in (base, project, record_path)]
    assert modes == [0o700, 0o700, 0o600]

    def probe(*args: str, settings: str | None) -> subprocess.CompletedProcess[str]:
        probe_env = {key: value for key, value in env.items() if key != "DJANGO_SETTINGS_MODULE"}
        if settings is not None:
            probe_env["DJANGO_SETTINGS_MODULE"] = settings
        command = runworker_command("--check", *args, OPS_CHANNEL)
        return subprocess.run(command, env=probe_env, capture_output=True, text=True, timeout=60)

    own = probe(settings=OPS_SETTINGS)
    assert (own.returncode, one_line(own)[:16]) == (0, "healthy: worker "), own.stdout
    other_project = "other_site.settings"
    no_record = f"no running worker on this host (no live health record in {base / other_project})"
    other = probe(settings=other_project)
    assert (other.returncode, one_line(other)) == (1, no_record)
    flagged = probe("--settings", other_project, settings=OPS_SETTINGS)
    assert (flagged.returncode, one_line(flagged)) == (1, no_record)
    unscoped = probe(settings=None)
    assert unscoped.returncode == 1
    assert one_line(unscoped) == (
        "runworker --check needs the settings module of the workers to check, to count only "
        "that project's: pass --settings mysite.settings or set DJANGO_SETTINGS_MODULE (this "
        f"host has health records of {OPS_SETTINGS} in {base})"
    )
    assert stop(worker) == 0


@pytest.mark.e2e
@pytest.mark.redis
def test_runworker_check_in_another_project_with_the_same_settings_name_finds_no_worker(
    ops: Ops, tmp_path: Path
) -> None:
    # Two copies of one project, both "mysite.settings", as two startproject mysite would be.
    for name in ("ours", "theirs"):
        shutil.copytree(OPS_PROJECT_DIR, tmp_path / name / "mysite")
    env = {
        key: value
        for key, value in ops.env(DJANGO_SETTINGS_MODULE="mysite.settings").items()
        if key != "CHANNEL_WORKER_HEALTH_DIR"
    }
    command = runworker_command("--health-interval-s", "0.5", OPS_CHANNEL)
    worker = ops.start(command, cwd=tmp_path / "ours", env=env)
    worker.wait_for_line(STARTED)
    project = ops.temp_dir / f"channel-worker-{os.geteuid()}" / "mysite.settings"
    record_path = wait_for(
        lambda: next(project.glob("*.json"), None), "the worker's health record", log=worker
    )
    ours = (tmp_path / "ours" / "mysite" / "settings.py").resolve()
    assert json.loads(record_path.read_text())["settings_file"] == str(ours)

    def probe(project_root: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            runworker_command("--check", OPS_CHANNEL),
            env=env,
            cwd=project_root,
            capture_output=True,
            text=True,
            timeout=60,
        )

    own = probe(tmp_path / "ours")
    assert (own.returncode, one_line(own)[:16]) == (0, "healthy: worker "), own.stdout
    other = probe(tmp_path / "theirs")
    assert other.returncode == 1
    theirs = (tmp_path / "theirs" / "mysite" / "settings.py").resolve()
    assert one_line(other) == elsewhere_line(project, str(ours), str(theirs)), other.stdout
    assert stop(worker) == 0
