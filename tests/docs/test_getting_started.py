"""docs/getting-started.md, built from its own snippets and run: uvicorn, runworker and Redis.

The page's snippet convention, which this test relies on: every file of the project is a MyST
fence ``{code-block} <language>`` with a ``:caption:`` option whose first word is the file's
path, relative to the directory with ``manage.py`` (``mysite/asgi.py``). When the caption goes on
with ``(append ...``, the block is appended to the file that ``startproject`` or ``startapp``
generated; otherwise the block is the whole file, written or replacing the generated one. Fences
without a caption (commands, output) are not files. The commands the test runs are the page's
own: each must appear as a ``$ `` line of a ``console`` fence.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.redis_server import free_port
from tests.worker.process_helpers import WorkerProcess, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

PAGE = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"
PROJECT = "mysite"
APP = "thumbnails"
# A code-block fence, its option lines (":caption: ..."), and its body up to the closing fence.
FENCE = re.compile(
    r"^```\{code-block\} (?P<language>\S+)\n"
    r"(?P<options>(?::[\w-]+:[^\n]*\n)*)\n?"
    r"(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
CONSOLE = re.compile(r"^```console\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
# The files the page must give; a snippet for any other file is written too.
EXPECTED_FILES = {
    "mysite/settings.py",
    "mysite/asgi.py",
    "mysite/urls.py",
    "thumbnails/consumers.py",
    "thumbnails/tasks.py",
    "thumbnails/views.py",
    "thumbnails/urls.py",
}
CHANNELS = ("thumbnails-generate", "tasks.default")
# A made-up CSRF token, sent as the cookie and the header, as the page's curl lines do.
CSRF_TOKEN = "abcdefghijklmnopqrstuvwxyz012345"
# The suite's server is shared: this project gets a database of its own on it, so no key of
# another test's layer (nor a worker left running by one) meets this project's channels.
REDIS_DATABASE = 7
DEADLINE_S = 20.0


@dataclass(frozen=True)
class Snippet:
    path: str
    append: bool
    body: str


def snippets(page: str) -> list[Snippet]:
    """The page's file snippets, in order."""
    found = []
    for fence in FENCE.finditer(page):
        options = dict(
            (name, value.strip())
            for name, _, value in (
                line[1:].partition(":") for line in fence["options"].splitlines()
            )
        )
        caption = options.get("caption")
        if caption:
            path, _, rest = caption.partition(" ")
            found.append(Snippet(path, rest.startswith("(append"), fence["body"]))
    return found


def console_commands(page: str) -> set[str]:
    return {
        line.removeprefix("$ ").strip()
        for block in CONSOLE.finditer(page)
        for line in block["body"].splitlines()
        if line.startswith("$ ")
    }


def documented(page: str, command: str) -> str:
    assert command in console_commands(page), f"{command!r} is not a command of {PAGE.name}"
    return command


def run(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> None:
    done = subprocess.run(
        list(command), cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}{done.stderr}"


def python_command(command: str) -> list[str]:
    """A documented command run with this interpreter: ``python``, ``django-admin``, a script."""
    program, *args = command.split()
    if program == "python":
        return [sys.executable, *args]
    if program == "django-admin":
        return [sys.executable, "-m", "django", *args]
    if program == "uvicorn":
        return [sys.executable, "-m", "uvicorn", *args]
    script = Path(sys.executable).with_name(program)
    assert script.exists(), f"no console script {script}"
    return [str(script), *args]


def build_project(page: str, directory: Path, env: Mapping[str, str]) -> Path:
    """``startproject``, ``startapp``, the page's snippets written in, ``migrate``."""
    startproject = documented(page, f"django-admin startproject {PROJECT}")
    run(python_command(startproject), directory, env)
    project = directory / PROJECT
    run(python_command(documented(page, f"python manage.py startapp {APP}")), project, env)
    found = snippets(page)
    assert {snippet.path for snippet in found} >= EXPECTED_FILES
    for snippet in found:
        target = project / snippet.path
        if snippet.append:
            assert target.exists(), f"{snippet.path} is appended to, but nothing generated it"
            target.write_text(target.read_text() + "\n\n" + snippet.body)
        else:
            target.write_text(snippet.body)
    run(python_command(documented(page, "python manage.py migrate")), project, env)
    return project


def project_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "REDIS_URL") and not key.startswith("CW_TEST_")
    }
    base, _, _ = redis_url.rpartition("/")
    return env | {
        "REDIS_URL": f"{base}/{REDIS_DATABASE}",
        # Health records of this test's workers only, not those of a development worker.
        "CHANNEL_WORKER_HEALTH_DIR": str(tmp_path / "health"),
        "PYTHONUNBUFFERED": "1",
    }


@contextmanager
def started(command: Sequence[str], env: Mapping[str, str], cwd: Path) -> Iterator[WorkerProcess]:
    """A process, stopped with SIGTERM (and waited for) however the block ends."""
    process = WorkerProcess(command, env, cwd)
    try:
        yield process
    finally:
        if process.process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                process.process.wait(30)
        process.close()  # kills whatever is left, closes the pipe


class Site:
    """HTTP and WebSocket requests to the project's uvicorn, never through a proxy."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, path: str, form: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """GET ``path``, or POST ``form`` with a CSRF token; the status and the JSON body."""
        request = urllib.request.Request(self.base + path)
        if form is not None:
            request.data = urllib.parse.urlencode(form).encode()
            request.add_header("Cookie", f"csrftoken={CSRF_TOKEN}")
            request.add_header("X-CSRFToken", CSRF_TOKEN)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def websocket_url(self, path: str) -> str:
        return self.base.replace("http://", "ws://") + path


def check_worker(site: Site, worker: WorkerProcess, picture_id: int) -> None:
    """Send from the view, see the consumer run and the browser told; enqueue, see the task run."""
    url = site.websocket_url("/ws/thumbnails/")
    with connect(url, origin=Origin(site.base), proxy=None, open_timeout=10) as websocket:
        # connect() returns once the consumer has joined the group: the event cannot be missed.
        status, body = site.request(f"/pictures/{picture_id}/thumbnails/", {})
        assert (status, body) == (202, {"queued": picture_id})
        worker.wait_for_line(
            rf"thumbnails\.consumers .*Generating thumbnails for picture {picture_id}$",
            timeout_s=DEADLINE_S,
        )
        assert json.loads(websocket.recv(timeout=DEADLINE_S)) == {"ready": picture_id}

    status, body = site.request("/words/", {"text": "the quick brown fox"})
    assert status == 202
    task_path = f"/tasks/{body['task_id']}/"

    def finished() -> Any:
        _, result = site.request(task_path)
        return result if result["status"] in ("SUCCESSFUL", "FAILED") else None

    result = wait_until(finished, f"the task at {task_path}", timeout_s=DEADLINE_S, log=worker)
    assert result == {"status": "SUCCESSFUL", "return_value": 4}
    worker.wait_for_line(r"thumbnails\.tasks .*Counted 4 words$", timeout_s=DEADLINE_S)
    assert site.request("/tasks/no-such-task/") == (404, {"error": "no task no-such-task"})


def test_the_getting_started_project_serves_sends_and_runs_its_consumer_and_task(
    redis_url: str, tmp_path: Path
) -> None:
    page = PAGE.read_text()
    env = project_env(redis_url, tmp_path)
    project = build_project(page, tmp_path, env)
    port = free_port()
    serve = documented(page, f"uvicorn {PROJECT}.asgi:application --lifespan off")
    channels = " ".join(CHANNELS)
    worker_commands = [
        documented(page, f"runworker --settings {PROJECT}.settings {channels}"),
        documented(page, f"python manage.py runworker {channels}"),
    ]
    site = Site(port)
    uvicorn = [*python_command(serve), "--host", "127.0.0.1", "--port", str(port)]
    with started(uvicorn, env, project) as web:
        web.wait_for_line(r"Uvicorn running on", timeout_s=DEADLINE_S)
        for picture_id, command in enumerate(worker_commands, start=7):
            with started(python_command(command), env, project) as worker:
                worker.wait_for_line(r"Worker \S+ consuming thumbnails-generate ", timeout_s=30)
                check_worker(site, worker, picture_id)
            assert worker.process.returncode == 0, worker.output
            counters = worker.summary()
            assert (counters["completed"], counters["failed"]) == (2, 0), worker.output
            # The page's expiry is long enough for a task channel: no warning at start-up.
            assert not worker.matches(r"drops queued messages after expiry"), worker.output
        assert not web.matches(r"Traceback|Internal Server Error"), web.output
