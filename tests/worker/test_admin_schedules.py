"""The admin's Schedules page with Django's test client: what it shows of each schedule after a
real fire, who may see it and run one now, and "run now" (confirmation, CSRF, once per
confirmation, the admin's log)."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis
from django.contrib.auth.models import User
from django.test import Client

from tests.worker.admin_site import account, installed, queued, site
from tests.worker.process_helpers import REPO_ROOT, runworker_command, wait_until, worker_env
from tests.worker.schedule_helpers import (
    CHANNEL,
    SETTINGS_MODULE,
    SWEEP,
    processes_fixture,
    schedule_settings,
)
from tests.worker.test_cli_process import Processes
from worker.admin.schedule_pages import SCHEDULES_DOCS_URL
from worker.schedules.setup import project_schedules
from worker.transport.keys import schedule_state_key

pytestmark = pytest.mark.redis

__all__ = ["installed", "processes_fixture", "site"]  # the fixtures, imported for these tests

PAGE = "/admin/channel_worker/schedule/"
TASK = "tests.worker.tasks_project.tasks.add"
NIGHTLY: dict[str, Any] = {
    "task": TASK,
    "cron": "0 3 * * *",
    "timezone": "Europe/Paris",
    "args": [1, 2],
}
SCHEDULES = {"nightly": NIGHTLY, "sweep": {**SWEEP, "every_s": 3600}}


@pytest.fixture
def scheduled(site: str) -> Iterator[str]:
    """The admin with ``SCHEDULES`` in its settings; the Redis URL."""
    with schedule_settings(site, SCHEDULES):
        yield site


def user(name: str, **kwargs: Any) -> Client:
    client = Client()
    client.force_login(account(name, **kwargs))
    return client


def text(response: Any) -> str:
    return str(response.content.decode())


def row(page: str, name: str) -> dict[str, str]:
    """The page's row of schedule ``name``: field -> its HTML, as the page has it."""
    found = re.search(rf'<tr data-schedule="{re.escape(name)}">(.*?)</tr>', page, re.S)
    assert found is not None, page
    return dict(re.findall(r'data-field="(\w+)">(.*?)</t[dh]>', found.group(1), re.S))


def confirmation_token(page: str) -> str:
    found = re.search(r'name="token" value="([\w-]+)"', page)
    assert found is not None, page
    return found.group(1)


def log_entries() -> Any:
    from django.contrib.admin.models import LogEntry  # loads once the admin is installed

    return LogEntry.objects


def state_key(name: str) -> str:
    from django.conf import settings

    digest = project_schedules(settings.CHANNEL_WORKER)[name].digest
    return schedule_state_key("asgi", name, digest)


@pytest.mark.e2e
def test_the_page_shows_each_schedule_after_a_real_fire(site: str, processes: Processes) -> None:
    every_s = {key: value for key, value in NIGHTLY.items() if key != "cron"} | {"every_s": 1}
    schedules = {"report": every_s, "sweep": {**SWEEP, "every_s": 1}, "nightly": NIGHTLY}
    env = worker_env({"address": site}) | {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "CW_TEST_SCHEDULES": json.dumps(schedules),
    }
    worker = processes.start(runworker_command(CHANNEL, "tasks.default"), env, REPO_ROOT)
    worker_id = worker.wait_for_line(r"Worker (?P<id>\S+) consuming ")["id"]
    client = user("viewer", perms=("view_schedule",))

    def both_fired() -> str:
        page = text(client.get(PAGE))
        report, sweep = row(page, "report"), row(page, "sweep")
        fired = sweep["last_worker"] == worker_id == report["last_worker"]
        return page if fired and "SUCCESSFUL</a>" in report["outcome"] else ""

    with schedule_settings(site, schedules):
        page = wait_until(both_fired, "a task and a message fired by the worker", log=worker)

    report, sweep, nightly = row(page, "report"), row(page, "sweep"), row(page, "nightly")
    assert report["runs"] == f"task {TASK}"
    assert sweep["runs"] == f"channel {CHANNEL}, type sweep.run"
    assert sweep["when"] == "every 1 s; missed ticks: skip"
    assert (sweep["timezone"], sweep["outcome"]) == ("UTC", "sent")
    for fired in (report, sweep):
        last_run = datetime.fromisoformat(fired["last_run"]).timestamp()
        assert abs(last_run - time.time()) < 60
        assert datetime.fromisoformat(fired["next_run"]).timestamp() > last_run
    result_link = re.fullmatch(
        r'<a href="/admin/channel_worker/taskresult/default/([\w-]+)/">SUCCESSFUL</a>',
        report["outcome"],
    )
    assert result_link is not None, report["outcome"]
    result_page = user("results", perms=("view_taskresult",)).get(
        f"/admin/channel_worker/taskresult/default/{result_link.group(1)}/"
    )
    assert "SUCCESSFUL" in text(result_page)
    assert nightly["when"] == "cron &#x27;0 3 * * *&#x27; (Europe/Paris); missed ticks: skip"
    assert nightly["timezone"] == "Europe/Paris"
    assert datetime.fromisoformat(nightly["next_run"]).strftime("%H:%M") == "03:00"
    assert (nightly["last_run"], nightly["last_worker"], nightly["outcome"]) == ("never", "-", "-")
    assert nightly["due"] == "no"
    assert "Run now" not in page  # a viewer only


def test_a_tick_no_worker_fired_is_shown_due(scheduled: str) -> None:
    with redis.Redis.from_url(scheduled) as client:
        client.hset(state_key("nightly"), "first_seen", time.time() - 2 * 24 * 3600)
    page = text(user("viewer", perms=("view_schedule",)).get(PAGE))
    assert row(page, "nightly")["due"] == '<span class="cw-unhealthy">yes</span>'
    assert row(page, "sweep")["due"] == "no"


def test_without_schedules_the_page_says_how_to_add_one(site: str) -> None:
    page = text(user("root", superuser=True).get(PAGE))
    assert 'No schedules: <code>CHANNEL_WORKER["SCHEDULES"]</code> is empty.' in page
    assert f'<a href="{SCHEDULES_DOCS_URL}">Schedules</a>' in page
    assert SCHEDULES_DOCS_URL.endswith("/docs/schedules.md")


def test_run_now_enqueues_once_across_a_double_post_and_is_logged(scheduled: str) -> None:
    client = user("root", superuser=True)
    assert "Run now" in text(client.get(PAGE))
    asked = client.post(f"{PAGE}nightly/run/")
    assert "Are you sure?" in text(asked)
    assert queued(scheduled, "tasks.default") == 0
    confirmed = {"confirm": "yes", "token": confirmation_token(text(asked))}

    done = client.post(f"{PAGE}nightly/run/", confirmed, follow=True)
    again = client.post(f"{PAGE}nightly/run/", confirmed, follow=True)

    assert queued(scheduled, "tasks.default") == 1
    assert "Ran schedule &#x27;nightly&#x27; now: enqueued (result " in text(done)
    assert "was already run by this confirmation: enqueued (result " in text(again)
    nightly = row(text(again), "nightly")
    assert nightly["last_worker"].startswith("admin user root (")
    assert re.fullmatch(
        r'<a href="/admin/channel_worker/taskresult/default/[\w-]+/">READY</a>',
        (nightly["outcome"]),
    )
    entry = log_entries().get()
    assert (entry.user.username, entry.object_id) == ("root", "nightly")
    assert entry.change_message.startswith("Ran schedule nightly now: enqueued (result ")

    # A new confirmation runs it again.
    token = confirmation_token(text(client.post(f"{PAGE}nightly/run/")))
    client.post(f"{PAGE}nightly/run/", {"confirm": "yes", "token": token})
    assert queued(scheduled, "tasks.default") == 2
    assert log_entries().count() == 2


def test_run_now_of_a_channel_schedule_sends_its_message(scheduled: str) -> None:
    client = user("root", superuser=True)
    token = confirmation_token(text(client.post(f"{PAGE}sweep/run/")))
    client.post(f"{PAGE}sweep/run/", {"confirm": "yes", "token": token})
    assert queued(scheduled, CHANNEL) == 1
    assert row(text(client.get(PAGE)), "sweep")["outcome"] == "sent"


def test_a_viewer_sees_no_button_and_may_not_run(scheduled: str) -> None:
    client = user("viewer", perms=("view_schedule",))
    page = text(client.get(PAGE))
    assert row(page, "nightly")["runs"] == f"task {TASK}"
    assert "Run now" not in page
    for data in ({}, {"confirm": "yes", "token": "a" * 22}):
        assert client.post(f"{PAGE}nightly/run/", data).status_code == 403
    assert queued(scheduled, "tasks.default") == 0
    assert user("nobody").get(PAGE).status_code == 403


def test_a_user_who_is_not_staff_is_sent_to_the_login(scheduled: str) -> None:
    client = user("visitor", staff=False, perms=("view_schedule", "change_schedule"))
    for response in (
        client.get(PAGE),
        client.post(f"{PAGE}nightly/run/", {"confirm": "yes", "token": "a" * 22}),
    ):
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
    assert queued(scheduled, "tasks.default") == 0


def test_run_now_refuses_a_post_without_a_csrf_token(scheduled: str) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("csrf", password="pw"))
    response = client.post(f"{PAGE}nightly/run/", {"confirm": "yes", "token": "a" * 22})
    assert response.status_code == 403
    assert queued(scheduled, "tasks.default") == 0


def test_an_unknown_schedule_is_not_found(scheduled: str) -> None:
    response = user("root", superuser=True).post(f"{PAGE}nighty/run/")
    assert response.status_code == 404


def test_html_from_redis_or_a_user_name_is_escaped(scheduled: str) -> None:
    client = user("<b>ops</b>", superuser=True)
    token = confirmation_token(text(client.post(f"{PAGE}nightly/run/")))
    client.post(f"{PAGE}nightly/run/", {"confirm": "yes", "token": token})
    error = "<script>alert('boom')</script>"
    with redis.Redis.from_url(scheduled) as redis_client:
        redis_client.hset(
            state_key("sweep"),
            mapping={"last_worker": "<i>w</i>", "last_error": error, "last_error_at": time.time()},
        )
    page = text(client.get(PAGE))
    assert row(page, "nightly")["last_worker"].startswith("admin user &lt;b&gt;ops&lt;/b&gt; (")
    assert row(page, "sweep")["last_worker"] == "&lt;i&gt;w&lt;/i&gt;"
    assert html.escape(error) in row(page, "sweep")["outcome"]
    for raw in ("<b>ops</b>", "<i>w</i>", error):
        assert raw not in page


def test_the_page_reads_a_hash_per_schedule_and_scans_nothing(scheduled: str) -> None:
    with redis.Redis.from_url(scheduled) as client:
        client.config_resetstat()
        assert user("viewer", perms=("view_schedule",)).get(PAGE).status_code == 200
        calls = {
            name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in client.info("commandstats").items()
        }
    assert calls.get("hgetall") == len(SCHEDULES)
    assert not {"scan", "keys", "hscan", "zscan", "sscan"} & set(calls), calls
