"""docs/tasks.md's Tasks quickstart, built from its own snippets and run: runworker and Redis.

The snippets follow docs/getting-started.md's convention (a ``:caption:`` names each file) and
are read with that test's helpers. The page's ``pycon`` session runs in the page's own
``python manage.py shell``: what comes before ``enqueue()`` once, the rest until it passes or the
deadline ends, since the worker runs the task a moment later.
"""

from __future__ import annotations

import ast
import doctest
import re
import subprocess
from pathlib import Path

import pytest

from tests.docs.test_getting_started import (
    DEADLINE_S,
    documented,
    project_env,
    python_command,
    run,
    snippets,
    started,
)

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

PAGE = Path(__file__).resolve().parents[2] / "docs" / "tasks.md"
PROJECT = "mysite"
APP = "words"
SECTION = re.compile(r"^## Tasks quickstart\n(?P<body>.*?)^## ", re.MULTILINE | re.DOTALL)
SESSION = re.compile(r"^```pycon\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
# The settings a project that only uses django.tasks needs; the page promises no others.
SETTINGS = {"INSTALLED_APPS", "CHANNEL_LAYERS", "TASKS"}
# A database of its own on the suite's server, beside getting-started's 7.
REDIS_DATABASE = 8
# Run in the shell: the examples up to enqueue() once, then the others until they pass.
DRIVER = """
import doctest, sys, time

examples = doctest.DocTestParser().get_examples({session!r})
split = next(i for i, example in enumerate(examples) if ".enqueue(" in example.source) + 1
names = {{}}


def passes(part, report):
    # DocTest runs on a copy of the names: keep what the part defined.
    test = doctest.DocTest(part, names, "quickstart", None, 0, None)
    runner = doctest.DocTestRunner()
    runner.run(test, out=report, clear_globs=False)
    names.update(test.globs)
    return runner.failures == 0


if not passes(examples[:split], sys.stdout.write):
    sys.exit(1)
deadline = time.monotonic() + {deadline_s}
while not passes(examples[split:], lambda text: None):
    if time.monotonic() > deadline:
        passes(examples[split:], sys.stdout.write)
        sys.exit(1)
    time.sleep(0.05)
print("session passed")
"""


def quickstart() -> str:
    found = SECTION.search(PAGE.read_text())
    assert found is not None, f"no '## Tasks quickstart' section in {PAGE.name}"
    return found["body"]


def assigned_names(source: str) -> set[str]:
    """The settings a snippet sets: names assigned at its top level, ``+=`` included."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names


def build(section: str, directory: Path, env: dict[str, str]) -> Path:
    """``startproject``, ``startapp`` and the section's snippets written in."""
    run(python_command(documented(section, f"django-admin startproject {PROJECT}")), directory, env)
    project = directory / PROJECT
    run(python_command(documented(section, f"python manage.py startapp {APP}")), project, env)
    found = {snippet.path: snippet for snippet in snippets(section)}
    assert set(found) == {f"{PROJECT}/settings.py", f"{APP}/tasks.py"}
    settings = found[f"{PROJECT}/settings.py"]
    assert settings.append
    assert assigned_names(settings.body) == SETTINGS
    for snippet in found.values():
        target = project / snippet.path
        if snippet.append:
            target.write_text(target.read_text() + "\n\n" + snippet.body)
        else:
            target.write_text(snippet.body)
    assert "ASGI_APPLICATION" not in (project / PROJECT / "settings.py").read_text()
    return project


def test_the_tasks_quickstart_runs_its_task_without_an_asgi_application(
    redis_url: str, tmp_path: Path
) -> None:
    section = quickstart()
    env = project_env(redis_url, tmp_path)
    env["REDIS_URL"] = f"{redis_url.rpartition('/')[0]}/{REDIS_DATABASE}"
    project = build(section, tmp_path, env)
    sessions = SESSION.findall(section)
    assert len(sessions) == 1, "the quickstart has one pycon session"
    driver = DRIVER.format(session=sessions[0], deadline_s=DEADLINE_S)
    assert doctest.DocTestParser().get_examples(sessions[0])
    command = documented(section, f"runworker --settings {PROJECT}.settings tasks.default")
    with started(python_command(command), env, project) as worker:
        worker.wait_for_line(r"Worker \S+ consuming tasks\.default ", timeout_s=30)
        shell = python_command(documented(section, "python manage.py shell"))
        done = subprocess.run(
            [*shell, "-c", driver],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S + 30,
        )
        assert done.returncode == 0, f"{done.stdout}{done.stderr}\nworker:\n{worker.output}"
        assert "session passed" in done.stdout
    assert worker.process.returncode == 0, worker.output
    counters = worker.summary()
    assert (counters["completed"], counters["failed"]) == (1, 0), worker.output
    # The page's expiry suits a task channel: no warning at start-up.
    assert not worker.matches(r"drops queued messages after expiry"), worker.output
