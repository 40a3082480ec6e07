"""Run ``runworker`` as a subprocess and observe it: log lines, exit code, the project's records."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
import redis
from channels_redis.core import RedisChannelLayer

from tests.redis_server import RedisServer, require_redis_server
from tests.worker.project.consumers import DONE_KEY, STARTED_KEY, TASKS_CHANNEL
from worker.transport.keys import ChannelKeys

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_DIR = Path(__file__).resolve().parent / "project"
SETTINGS_MODULE = "tests.worker.project.settings"
# Under channels-redis's default prefix: the channel's sorted set "asgi<channel>" and the
# worker's at-least-once leases beside it.
KEYS = ChannelKeys.for_channel("asgi", TASKS_CHANNEL)
CHANNEL_KEY = KEYS.queue
INFLIGHT_KEY = KEYS.inflight
# The summary line: "Worker stopped: received=4 completed=2 failed=0 ... cancelled=0".
SUMMARY = re.compile(r"Worker stopped: (?P<counters>(?:\w+=\d+ ?)+)$")
# The pid that the log format puts after the logger name: "INFO worker.consume.worker [1234] ...".
LOG_PID = re.compile(r" \[(?P<pid>\d+)\] ")

Host = Mapping[str, Any]


def runworker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker", *args]


def manage_command(*args: str) -> list[str]:
    return [sys.executable, str(PROJECT_DIR / "manage.py"), *args]


def worker_env(host: Host | None = None, /, **switches: str) -> dict[str, str]:
    """The environment of a worker process serving the test project on ``host``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CW_TEST_") and key not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    if host is not None:
        env["REDIS_URL"] = host["address"]
        if "ssl_ca_certs" in host:
            env["CW_TEST_REDIS_CA"] = str(host["ssl_ca_certs"])
    return env | switches


class WorkerProcess:
    """A process whose combined stdout and stderr lines are collected by a reader thread.

    It runs in a session of its own, so signals sent to the test's process group never reach it.
    """

    def __init__(self, command: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.pid = self.process.pid
        self._lines: list[str] = []
        self._closed = False
        # Reentrant, so ``output`` can be read while the condition is held.
        self._changed = threading.Condition(threading.RLock())
        self._reader = threading.Thread(target=self._read, name=f"log reader {self.pid}")
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def lines(self) -> list[str]:
        with self._changed:
            return list(self._lines)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def matches(self, pattern: str) -> list[re.Match[str]]:
        compiled = re.compile(pattern)
        return [match for line in self.lines if (match := compiled.search(line))]

    def wait_for_lines(
        self, pattern: str, count: int = 1, *, timeout_s: float = 20.0
    ) -> list[re.Match[str]]:
        """Wait until ``count`` log lines match ``pattern``; fail with the log otherwise."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = [m for line in self._lines if (m := compiled.search(line))]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    pytest.fail(
                        f"{len(found)} of {count} log line(s) matching {pattern!r} after "
                        f"{timeout_s} s (process {'ended' if self._closed else 'running'}); "
                        f"log:\n{self.output}"
                    )
                self._changed.wait(remaining)

    def wait_for_line(self, pattern: str, *, timeout_s: float = 20.0) -> re.Match[str]:
        return self.wait_for_lines(pattern, 1, timeout_s=timeout_s)[0]

    def assert_no_line(self, pattern: str, *, during_s: float) -> None:
        """Watch the log for ``during_s`` seconds; fail as soon as a line matches ``pattern``."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + during_s
        with self._changed:
            while (remaining := deadline - time.monotonic()) > 0:
                found = [line for line in self._lines if compiled.search(line)]
                if found or self._closed:
                    pytest.fail(
                        f"Unexpected log line matching {pattern!r} or exit; log:\n{self.output}"
                    )
                self._changed.wait(remaining)

    def send_signal(self, number: signal.Signals) -> None:
        self.process.send_signal(number)

    def wait_exit(self, *, timeout_s: float = 30.0) -> int:
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"Process {self.pid} still running after {timeout_s} s; log:\n{self.output}"
            )
        self._reader.join(timeout_s)
        return code

    def summary(self) -> dict[str, int]:
        """The counters of the single "Worker stopped" line."""
        found = self.matches(SUMMARY.pattern)
        assert len(found) == 1, f"expected one summary line; log:\n{self.output}"
        pairs = (pair.partition("=") for pair in found[0]["counters"].split())
        return {name: int(value) for name, _, value in pairs}

    def close(self) -> None:
        """Kill the process and the worker processes it started, if still running."""
        logged = {int(match["pid"]) for match in self.matches(LOG_PID.pattern)}
        for pid in logged - {self.pid}:
            if parent_pid(pid) == self.pid:
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def parent_pid(pid: int) -> int | None:
    """The parent of a running process, None if it is gone (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    # "pid (command name) state ppid ...": the name may contain spaces and parentheses.
    return int(stat.rpartition(")")[2].split()[1])


def wait_until(
    condition: Callable[[], T], what: str, *, timeout_s: float = 20.0, log: WorkerProcess
) -> T:
    """Poll ``condition`` until it returns a truthy value; fail with the worker's log if not."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {timeout_s} s waiting for {what}; log:\n{log.output}")
        time.sleep(0.05)


def redis_client(host: Host) -> redis.Redis:
    options = dict(host)
    return redis.Redis.from_url(options.pop("address"), **options)


def send_tasks(host: Host, messages: Sequence[Mapping[str, Any]]) -> None:
    """Send ``task.run`` messages the way a Channels project does: ``channel_layer.send()``."""

    async def send() -> None:
        layer = RedisChannelLayer(hosts=[dict(host)])
        try:
            for message in messages:
                await layer.send(TASKS_CHANNEL, {"type": "task.run", **message})
        finally:
            await layer.close_pools()

    asyncio.run(send())


def records(client: redis.Redis, key: str) -> list[dict[str, Any]]:
    raw: list[bytes] = client.lrange(key, 0, -1)  # type: ignore[assignment]
    return [json.loads(entry) for entry in raw]


def started_ids(client: redis.Redis) -> list[str]:
    return [entry["id"] for entry in records(client, STARTED_KEY)]


def done_ids(client: redis.Redis) -> list[str]:
    return [entry["id"] for entry in records(client, DONE_KEY)]


def queued_ids(client: redis.Redis) -> list[str]:
    """The ids of the messages still waiting in the channel, decoded by channels-redis."""
    layer = RedisChannelLayer()
    members: list[bytes] = client.zrange(CHANNEL_KEY, 0, -1)  # type: ignore[assignment]
    return [str(layer.deserialize(member)["id"]) for member in members]


def skip_or_fail(reason: str) -> NoReturn:
    """Skip when a local tool is missing, but fail under CI=true, where it must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        skip_or_fail("openssl is not installed, so no test certificate can be made")
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    cert, key = directory / "server.crt", directory / "server.key"
    request, extensions = directory / "server.csr", directory / "server.ext"
    extensions.write_text(
        "subjectAltName = IP:127.0.0.1\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "authorityKeyIdentifier = keyid\n"
    )
    commands = [
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=channel-worker test CA", "-keyout", ca_key, "-out", ca,
         "-addext", "basicConstraints = critical, CA:TRUE",
         "-addext", "keyUsage = critical, keyCertSign, cRLSign"],
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", key, "-out", request],
        [openssl, "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-days", "2", "-extfile", extensions, "-out", cert],
    ]  # fmt: skip
    for command in commands:
        subprocess.run([str(part) for part in command], check=True, capture_output=True)
    return ca, cert, key


class TLSRedisServer(RedisServer):
    """A redis-server that accepts TLS connections only, on ``port``."""

    def __init__(self, ca: Path, cert: Path, key: Path) -> None:
        probe = subprocess.run(
            [require_redis_server(), "--port", "0", "--tls-port", "0", "--daemonize", "no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if "Bad directive" in probe.stdout + probe.stderr:
            skip_or_fail("this redis-server was built without TLS support (no --tls-port)")
        super().__init__()
        self.ca = ca
        # Later arguments win, so "--port 0" turns off the plain port RedisServer sets.
        self.extra_args += [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(cert),
            "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    @property
    def host(self) -> dict[str, Any]:
        return {
            "address": f"rediss://127.0.0.1:{self.port}/0",
            "ssl_ca_certs": str(self.ca),
            "ssl_cert_reqs": "required",
        }

    @property
    def url(self) -> str:
        return str(self.host["address"])

    def client(self) -> redis.Redis:
        return redis_client(self.host)
