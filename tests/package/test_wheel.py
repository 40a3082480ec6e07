"""The package as a user gets it: ``uv build``, ``twine check``, the wheel in a fresh virtualenv.

The wheel is installed into a virtualenv of its own and every command runs from a directory
outside the source tree with ``PYTHONPATH`` unset, so nothing can be imported from the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("worker", "routing")
# Never in the wheel: the wheel is the two packages and their metadata, nothing else.
NOT_IN_WHEEL = ("tests/", "example/", "bench/", "docs/")
# Never in the sdist: whatever a developer's checkout holds besides the sources.
NOT_IN_SDIST = (
    ".venv",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "docs/_build",
)
# The checkout's environment must not leak in: no source tree on the path, no test settings.
LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "PYTHONSTARTUP")
BUILD_TIMEOUT_S = 120


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class Installed:
    root: Path
    python: Path
    bin: Path
    cwd: Path


def project_version() -> str:
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        version = tomllib.load(file)["project"]["version"]
    assert isinstance(version, str)
    return version


def uv_binary() -> str:
    """The uv binary; skip locally when missing, fail under CI."""
    found = shutil.which("uv")
    if found is None and (home_uv := Path.home() / ".local" / "bin" / "uv").is_file():
        found = str(home_uv)
    if found is None:
        message = "uv is not installed (`make uv` installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def clean_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in LEAKY_ENV}


def run(command: Sequence[str | Path], cwd: Path) -> str:
    """Run ``command`` in ``cwd`` with the clean environment; its stdout, once it exited with 0."""
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{command} exited with {done.returncode}:\n{output}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    uv = uv_binary()
    run([uv, "build", "--python", sys.executable, "--out-dir", out, REPO_ROOT], cwd=out)
    wheels = sorted(out.glob("*.whl"))
    sdists = sorted(out.glob("*.tar.gz"))
    assert len(wheels) == len(sdists) == 1, sorted(path.name for path in out.iterdir())
    return Built(wheel=wheels[0], sdist=sdists[0])


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("venv")
    cwd = tmp_path_factory.mktemp("elsewhere")
    uv = uv_binary()
    run([uv, "venv", "--python", sys.executable, "--no-python-downloads", root], cwd=cwd)
    python = root / "bin" / "python"
    run([uv, "pip", "install", "--python", python, built.wheel], cwd=cwd)
    return Installed(root=root, python=python, bin=root / "bin", cwd=cwd)


def test_the_wheel_holds_both_packages_with_py_typed_and_no_tests_example_bench_or_docs(
    built: Built,
) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = wheel.namelist()

    for package in PACKAGES:
        assert f"{package}/py.typed" in names
        assert f"{package}/__init__.py" in names
    assert [name for name in names if name.startswith(NOT_IN_WHEEL)] == []
    top_level = {name.split("/")[0] for name in names}
    dist_info = f"channel_worker-{project_version()}.dist-info"
    assert top_level == {*PACKAGES, dist_info}
    assert f"{dist_info}/licenses/LICENSE" in names
    assert [name for name in names if "__pycache__" in name or name.endswith(".pyc")] == []
    # The Lua scripts are data files beside their module, read at import.
    lua = {Path(name).name for name in names if name.startswith("worker/transport/lua/")}
    assert {"pop.lua", "send.lua", "requeue_at_head.lua"} <= lua
    # The admin pages' templates and script, found by Django's app loaders.
    assert "worker/templates/channel_worker/admin/channels.html" in names
    assert "worker/static/channel_worker/admin_live.js" in names


def test_the_sdist_holds_the_sources_and_no_virtualenvs_caches_or_built_docs(
    built: Built,
) -> None:
    with tarfile.open(built.sdist) as sdist:
        members = sdist.getnames()
    prefix = f"channel_worker-{project_version()}/"
    names = [name.removeprefix(prefix) for name in members]

    for needed in ("pyproject.toml", "README.md", "LICENSE", "worker/py.typed", "routing/py.typed"):
        assert needed in names
    leaked = [name for name in names if any(part in name for part in NOT_IN_SDIST)]
    assert leaked == []


def test_twine_check_passes_on_the_wheel_and_the_sdist(built: Built) -> None:
    output = run(
        [sys.executable, "-m", "twine", "check", "--strict", built.wheel, built.sdist],
        cwd=built.wheel.parent,
    )

    assert output.count("PASSED") == 2, output


@pytest.mark.parametrize("command", ["runworker", "channel-worker"])
def test_the_installed_commands_answer_help(installed: Installed, command: str) -> None:
    output = run([installed.bin / command, "--help"], cwd=installed.cwd)

    assert f"usage: {command}" in output


@pytest.mark.parametrize("command", ["runworker", "channel-worker"])
def test_the_installed_commands_print_the_project_version(
    installed: Installed, command: str
) -> None:
    output = run([installed.bin / command, "--version"], cwd=installed.cwd)

    assert project_version() in output


def test_the_public_api_imports_from_the_installed_wheel_not_the_checkout(
    installed: Installed,
) -> None:
    run(
        [installed.python, "-c", "from worker import send; from routing import URLRouter"],
        cwd=installed.cwd,
    )
    printed = run(
        [installed.python, "-c", "import worker, sys; print(worker.__file__)"], cwd=installed.cwd
    )

    scripts = run(
        [installed.python, "-c", "from worker.transport import scripts; print(scripts.POP)"],
        cwd=installed.cwd,
    )
    assert "ZPOPMIN" in scripts

    worker_file = Path(printed.strip()).resolve()
    assert worker_file.is_relative_to(installed.root.resolve()), worker_file
    assert "site-packages" in worker_file.parts
    assert not worker_file.is_relative_to(REPO_ROOT)
