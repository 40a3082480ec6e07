"""The README's quickstart, built from its own snippets, serves the web and runs its consumer.

Its four Python snippets, in order: the end of ``mysite/settings.py``, ``thumbnails/
consumers.py``, ``mysite/asgi.py`` and a send. Only the Redis address is changed, to the
suite's server, as a reader points it at theirs.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tests.docs.test_getting_started import (
    DEADLINE_S,
    project_env,
    python_command,
    run,
    started,
)
from tests.redis_server import free_port

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

README = Path(__file__).resolve().parents[2] / "README.md"
README_REDIS = "redis://127.0.0.1:6379/0"
WORKER = "runworker --settings mysite.settings thumbnails-generate"


def python_snippets(text: str) -> list[str]:
    return [
        token.content
        for token in MarkdownIt("commonmark").parse(text)
        if token.type == "fence" and token.info.split()[:1] == ["python"]
    ]


def test_the_readme_quickstart_serves_http_and_runs_its_consumer(
    redis_url: str, tmp_path: Path
) -> None:
    text = README.read_text()
    settings, consumer, asgi, send = python_snippets(text)
    assert README_REDIS in settings
    assert f"{WORKER}   # from the directory with manage.py" in text
    env = project_env(redis_url, tmp_path)
    run(python_command("django-admin startproject mysite"), tmp_path, env)
    project = tmp_path / "mysite"
    run(python_command("python manage.py startapp thumbnails"), project, env)
    settings_path = project / "mysite" / "settings.py"
    own_redis = settings.replace(README_REDIS, env["REDIS_URL"])
    settings_path.write_text(settings_path.read_text() + "\n\n" + own_redis)
    (project / "thumbnails" / "consumers.py").write_text(consumer)
    (project / "mysite" / "asgi.py").write_text(asgi)

    port = free_port()
    serve = python_command("uvicorn mysite.asgi:application --lifespan off")
    with started([*serve, "--host", "127.0.0.1", "--port", str(port)], env, project) as web:
        web.wait_for_line(r"Uvicorn running on", timeout_s=DEADLINE_S)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/admin/login/", timeout=10) as response:
            assert response.status == 200
        with started(python_command(WORKER), env, project) as worker:
            worker.wait_for_line(r"Worker \S+ consuming thumbnails-generate ", timeout_s=30)
            run([*python_command("python manage.py shell"), "-c", send], project, env)
            worker.wait_for_line(r"making thumbnails of picture 7", timeout_s=DEADLINE_S)
        assert worker.process.returncode == 0, worker.output
        assert not web.matches(r"Traceback|Internal Server Error"), web.output
