"""Run the example: Redis (embedded when ``REDIS_URL`` is unset), migrate, web server, worker.

::

    python example/run_demo.py [--port 8000] [--host 127.0.0.1] [--data-dir DIR]

Prints ``Demo ready at http://127.0.0.1:8000/`` once the page answers and the worker reports
healthy, and before it the admin's address with its superuser and password
(``$DEMO_ADMIN_PASSWORD``, or a new one each run). Ctrl-C or SIGTERM stops the web server, lets
the worker drain, then stops Redis, and waits for each; a second Ctrl-C kills them at once.
Every child runs in a process group of its own, killed whole if it does not stop in time, so
nothing outlives the demo.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from example._processes import Child, ChildFailed, Stop, say  # noqa: E402
from example._redis import NoRedisServer, RedisProcess  # noqa: E402
from worker.ops.health import check  # noqa: E402

SETTINGS_MODULE = "example.settings"
WORKER_CHANNELS = ("thumbnails-generate", "thumbnails-delete", "tasks.default")
WORKER_SHUTDOWN_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 60.0
READY_LINE = "Demo ready at {url}"
# The admin's superuser: its password is $DEMO_ADMIN_PASSWORD, or a new one each run.
ADMIN_USER = "admin"
ADMIN_PASSWORD_ENV = "DEMO_ADMIN_PASSWORD"
ADMIN_LINE = "Admin at {url} as {user!r}, password {password!r}"
# Exit codes: 0 stopped on request, 1 a process failed, 2 no Redis to use.
EXIT_OK, EXIT_FAILED, EXIT_NO_REDIS = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_demo.py", description="Run the thumbnails example: Redis, web server, worker."
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", "8000")), help="web port ($PORT)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="web address (default %(default)s)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the SQLite database and the uploads go (default: example/)",
    )
    return parser


def child_env(redis_url: str, health_dir: Path, data_dir: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env |= {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "REDIS_URL": redis_url,
        "CHANNEL_WORKER_HEALTH_DIR": str(health_dir),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    }
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        env["EXAMPLE_DATA_DIR"] = str(data_dir.resolve())
    return env


def migrate_command() -> list[str]:
    return [sys.executable, "-m", "django", "migrate", "--noinput", "--verbosity", "0"]


def admin_command() -> list[str]:
    return [sys.executable, "-m", "django", "demo_admin", "--username", ADMIN_USER]


def worker_command() -> list[str]:
    return [
        sys.executable, "-m", "worker", *WORKER_CHANNELS,
        "--shutdown-timeout-s", str(WORKER_SHUTDOWN_TIMEOUT_S),
    ]  # fmt: skip


def web_command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "example.asgi:application",
        "--host", host, "--port", str(port),
        # The root application routes http, websocket and channel scopes, not lifespan.
        "--lifespan", "off",
        # Open WebSockets are closed after this long, so Ctrl-C never waits on a browser tab.
        "--timeout-graceful-shutdown", "3",
    ]  # fmt: skip


def page_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(url: str, health_dir: Path, children: list[Child], stop: Stop) -> None:
    """Return once the page answers and the worker is healthy; raise if a child dies first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not stop.requested:
        for child in children:
            child.raise_if_exited("during start-up")
        if page_answers(url) and check(list(WORKER_CHANNELS), health_dir)[0]:
            return
        if time.monotonic() > deadline:
            raise ChildFailed(
                f"The demo was not ready after {READY_TIMEOUT_S:g} s: the page at {url} or the "
                "worker's health check did not answer; see the log lines above."
            )
        stop.wait(0.2)


def start(
    options: argparse.Namespace, stop: Stop, redis: RedisProcess, scratch: Path
) -> tuple[str, list[Child]]:
    """Redis, migrations, the worker and the web server; the page's URL once all are ready."""
    url = f"http://{options.host}:{options.port}/"
    health_dir = scratch / "health"
    env = child_env(redis.start(stop), health_dir, options.data_dir)
    if stop.requested:
        return url, []
    migrate = Child("migrate", migrate_command(), env, REPO_ROOT, stop)
    if migrate.wait_for_exit(stop) != 0 and not stop.requested:
        raise ChildFailed("`manage.py migrate` failed; see its output above.")
    password = os.environ.get(ADMIN_PASSWORD_ENV) or secrets.token_urlsafe(12)
    admin_env = env | {ADMIN_PASSWORD_ENV: password}
    superuser = Child("admin", admin_command(), admin_env, REPO_ROOT, stop)
    if superuser.wait_for_exit(stop) != 0 and not stop.requested:
        raise ChildFailed("`manage.py demo_admin` failed; see its output above.")
    say(ADMIN_LINE.format(url=f"{url}admin/", user=ADMIN_USER, password=password))
    children = [
        Child("worker", worker_command(), env, REPO_ROOT, stop),
        Child("web", web_command(options.host, options.port), env, REPO_ROOT, stop),
    ]
    pids = " ".join(f"{child.name}={child.pid}" for child in [*redis.children, *children])
    say(f"Demo processes: {pids}")
    wait_ready(url, health_dir, children, stop)
    return url, children


def watch(children: list[Child], redis: RedisProcess, stop: Stop) -> None:
    """Until Ctrl-C or SIGTERM; a child that exits meanwhile ends the demo."""
    while not stop.requested:
        for child in children:
            child.raise_if_exited("while the demo was running")
        redis.raise_if_exited()
        stop.wait(0.5)


def shut_down(stop: Stop, redis: RedisProcess) -> None:
    """Stop every child started so far, the last started first, and Redis after them all."""
    say("Stopping the demo: web server, then worker (draining), then Redis")
    # Web first, so no new work is queued while the worker drains; Redis last, so the worker
    # can hand back what it had not started.
    for child in reversed(stop.children):
        if child not in redis.children:
            child.stop(WORKER_SHUTDOWN_TIMEOUT_S + 5)
    redis.stop()


def run(options: argparse.Namespace) -> int:
    stop = Stop()
    stop.install()
    with tempfile.TemporaryDirectory(prefix="channel-worker-demo-") as scratch:
        redis = RedisProcess(Path(scratch) / "redis")
        try:
            url, children = start(options, stop, redis, Path(scratch))
            if not stop.requested:
                say(READY_LINE.format(url=url) + "  (Ctrl-C stops everything)")
            watch(children, redis, stop)
            code = EXIT_OK
        except NoRedisServer as error:
            say(f"run_demo: {error}", error=True)
            code = EXIT_NO_REDIS
        except ChildFailed as error:
            say(f"run_demo: {error}", error=True)
            code = EXIT_FAILED
        finally:
            shut_down(stop, redis)
        say("Demo stopped.")
        return code


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
