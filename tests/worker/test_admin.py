"""The admin's worker pages with Django's test client: what each page shows, who may see it,
and the requeue, purge and enqueue-again actions (confirmation, CSRF, log, idempotence)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from django.contrib.auth.models import User
from django.test import Client, override_settings

from tests.redis_server import RedisServer
from tests.worker.admin_site import (
    CHANNEL,
    PASSWORD,
    account,
    add_dead_letters,
    admin_installed,
    dead_count,
    installed,
    queued,
    redis_layer,
    send_messages,
    site,
    write_health,
)
from worker.admin import dead_letter_pages, readers
from worker.ops.health import RATE_BUCKET_S
from worker.transport.dead_letters import DEFAULT_MAX_UNDECODED_BYTES
from worker.transport.keys import channel_key, rate_key

pytestmark = pytest.mark.redis

__all__ = ["installed", "site"]  # the fixtures, imported for this module's tests

BASE = "/admin/channel_worker"


def log_entries() -> Any:
    """The admin's log (its model loads only once the admin is installed)."""
    from django.contrib.admin.models import LogEntry

    return LogEntry.objects


def user(
    name: str, *, staff: bool = True, superuser: bool = False, perms: tuple[str, ...] = ()
) -> Client:
    client = Client()
    client.force_login(account(name, staff=staff, superuser=superuser, perms=perms))
    return client


def cells(page: str, channel: str) -> dict[str, str]:
    """The Channels page's row of ``channel``: field -> text (numbers without their unit)."""
    row = re.search(rf'<tr data-channel="{re.escape(channel)}">(.*?)</tr>', page, re.S)
    assert row is not None, page
    found = dict(re.findall(r'data-field="(\w+)">(?:<a [^>]*>)?([^<]*)<', row.group(1)))
    return {key: value for key, value in found.items() if key not in ("oldest_age_s", "sparkline")}


def shown(page: str, channel: str, field: str) -> str:
    """The text of the Channels page's ``field`` of ``channel``, as shown (with its unit)."""
    row = re.search(rf'<tr data-channel="{re.escape(channel)}">(.*?)</tr>', page, re.S)
    assert row is not None, page
    cell = re.search(rf'data-field="{field}">([^<]*)<', row.group(1))
    assert cell is not None, row.group(1)
    return cell.group(1)


def backdate_oldest(redis_url: str, channel: str, seconds: float) -> None:
    """Make the oldest message queued on ``channel`` ``seconds`` older (its score is the time
    it was sent)."""
    key = channel_key(redis_layer(redis_url).prefix, channel)
    with redis.Redis.from_url(redis_url) as client:
        [(member, sent_at)] = client.zrange(key, 0, 0, withscores=True)
        client.zadd(key, {member: sent_at - seconds}, xx=True)


def set_rates(redis_url: str, channel: str, done: dict[int, int]) -> None:
    """The count of messages done in each 10 s bucket, as the workers keep them."""
    prefix = redis_layer(redis_url).prefix
    with redis.Redis.from_url(redis_url) as client:
        for bucket, count in done.items():
            client.set(rate_key(prefix, channel, bucket), count, ex=120)


def selectable(page: str) -> list[str]:
    """The ids of the dead letters a page lists, in its order."""
    return re.findall(r'name="_selected" value="(\w+)"', page)


def superuser() -> Client:
    return user("root", superuser=True)


def text(response: Any) -> str:
    return str(response.content.decode())


def test_the_admin_index_links_every_page(site: str) -> None:
    page = text(superuser().get("/admin/"))
    for name in ("channel", "worker", "deadletter", "taskresult"):
        assert f'href="{BASE}/{name}/"' in page
    assert "Channel worker" in page


def test_the_channels_page_shows_what_status_shows(site: str) -> None:
    write_health(site, "web-1:4242:aaaa", [CHANNEL])
    send_messages(site, CHANNEL, 7)
    add_dead_letters(site, CHANNEL, [{"type": "thumbnail.generate"}] * 2)

    response = superuser().get(f"{BASE}/channel/")

    assert response.status_code == 200
    page = text(response)
    assert cells(page, CHANNEL) == {
        "channel": CHANNEL,
        "queued": "7",
        "in_flight": "1",
        "delayed": "0",
        "dead_letters": "2",
        "live_workers": "1",
        "completed_last_minute": "0",
    }
    assert f'href="{BASE}/deadletter/{CHANNEL}/">2</a>' in page
    assert 'class="breadcrumbs"' in page


def test_the_channels_page_shows_the_oldest_messages_age_and_the_throughput_per_bucket(
    site: str,
) -> None:
    write_health(site, "web-1:4242:aaaa", [CHANNEL])
    send_messages(site, CHANNEL, 3)
    backdate_oldest(site, CHANNEL, 90.0)
    client = superuser()

    deadline = time.monotonic() + 30.0
    while True:
        newest = int(time.time() // RATE_BUCKET_S)
        # Done in the oldest bucket of the two minutes and in the one before the current.
        rates = {newest - 11: 7, newest - 1: 3}
        set_rates(site, CHANNEL, rates)
        page = text(client.get(f"{BASE}/channel/"))
        if int(time.time() // RATE_BUCKET_S) == newest:
            break
        # A bucket began during the render and moved the window: again in the new one.
        set_rates(site, CHANNEL, dict.fromkeys(rates, 0))
        assert time.monotonic() < deadline, "no render within one bucket"

    age = shown(page, CHANNEL, "oldest_age_s")
    assert age.endswith(" s"), age
    assert 90.0 <= float(age.removesuffix(" s")) < 120.0
    # One bar per 10 s, oldest first, scaled to the largest (7 -> the top bar, 3 -> 3 of 7).
    assert shown(page, CHANNEL, "sparkline") == "█" + "▁" * 9 + "▄▁"
    assert shown(page, CHANNEL, "completed_last_minute") == "3"


def test_the_workers_page_shows_each_live_worker_and_why_one_is_unhealthy(site: str) -> None:
    write_health(site, "web-1:4242:aaaa", [CHANNEL])
    write_health(site, "web-2:99:bbbb", ["tasks.default"], problem="Redis unreachable")

    page = text(superuser().get(f"{BASE}/worker/"))

    assert "web-1:4242:aaaa" in page
    assert "web-2:99:bbbb" in page
    assert 'data-field="host">web-2<' in page
    assert f'data-field="channels">{CHANNEL} (4, at-least-once)<' in page
    assert 'data-field="event_loop">uvloop<' in page
    assert 'data-field="uptime">2 h 5 min<' in page
    assert "Redis unreachable" in page
    assert 'class="cw-unhealthy">no<' in page


def test_a_password_in_the_layer_host_is_never_shown() -> None:
    server = RedisServer(password=PASSWORD)
    server.start()
    try:
        with admin_installed(server.url):
            User.objects.all().delete()
            page = text(superuser().get(f"{BASE}/channel/"))
    finally:
        server.cleanup()
    assert PASSWORD not in page
    assert f"redis://***@127.0.0.1:{server.port}/0" in page


def test_dead_letters_are_listed_per_channel_newest_first_a_page_at_a_time(site: str) -> None:
    letters = add_dead_letters(site, CHANNEL, [{"type": "job.run", "n": n} for n in range(150)])
    client = superuser()

    channels = text(client.get(f"{BASE}/deadletter/"))
    first = text(client.get(f"{BASE}/deadletter/{CHANNEL}/"))
    second = text(client.get(f"{BASE}/deadletter/{CHANNEL}/?p=2"))

    assert f'{CHANNEL}</a></th><td class="number">150<' in channels
    newest_first = [letter.id for letter in reversed(letters)]
    assert selectable(first) == newest_first[:100]
    assert selectable(second) == newest_first[100:]
    assert "Page 2 of 2 (150 dead letters" in second


def test_a_dead_letter_page_shows_the_message_and_traceback_escaped(site: str) -> None:
    hostile = "<script>alert('x')</script>"
    [letter] = add_dead_letters(site, CHANNEL, [{"type": "job.run", "body": hostile}], hostile)

    page = text(superuser().get(f"{BASE}/deadletter/{CHANNEL}/letter/{letter.id}/"))
    listing = text(superuser_again().get(f"{BASE}/deadletter/{CHANNEL}/"))

    assert "<script>alert" not in page
    assert "<script>alert" not in listing
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "ValueError: boom 0" in page


def superuser_again() -> Client:
    client = Client()
    client.force_login(User.objects.get(username="root"))
    return client


def test_an_unknown_dead_letter_or_channel_name_is_not_found(site: str) -> None:
    client = superuser()
    assert client.get(f"{BASE}/deadletter/{CHANNEL}/letter/nope/").status_code == 404
    assert client.get(f"{BASE}/deadletter/bad%20name/").status_code == 404


def test_requeue_asks_first_then_requeues_once_and_logs_who_did_it(site: str) -> None:
    letters = add_dead_letters(site, CHANNEL, [{"type": "job.run", "n": n} for n in range(3)])
    client = superuser()
    chosen = {"_selected": [letters[0].id, letters[1].id]}

    asked = client.post(f"{BASE}/deadletter/{CHANNEL}/requeue/", chosen)
    assert asked.status_code == 200
    assert "Are you sure?" in text(asked)
    assert letters[0].id in text(asked)
    assert (dead_count(site, CHANNEL), queued(site, CHANNEL)) == (3, 0)

    done = client.post(f"{BASE}/deadletter/{CHANNEL}/requeue/", chosen | {"confirm": "yes"})
    again = client.post(
        f"{BASE}/deadletter/{CHANNEL}/requeue/", chosen | {"confirm": "yes"}, follow=True
    )

    assert done.status_code == 302
    assert (dead_count(site, CHANNEL), queued(site, CHANNEL)) == (1, 2)
    assert "Requeued 0 dead letter(s)" in text(again)
    entries = list(log_entries().order_by("action_time"))
    assert [entry.user.username for entry in entries] == ["root", "root"]
    assert (
        entries[0].change_message
        == f"Requeued 2 of 2 selected dead letter(s) of channel {CHANNEL}."
    )
    assert entries[0].object_id == CHANNEL


def test_requeue_all_and_purge_act_on_the_whole_channel_after_confirmation(site: str) -> None:
    add_dead_letters(site, CHANNEL, [{"type": "job.run", "n": n} for n in range(4)])
    client = superuser()

    asked = client.post(f"{BASE}/deadletter/{CHANNEL}/requeue/", {"all": "1"})
    assert "all 4 dead letters" in text(asked)
    client.post(f"{BASE}/deadletter/{CHANNEL}/requeue/", {"all": "1", "confirm": "yes"})
    assert (dead_count(site, CHANNEL), queued(site, CHANNEL)) == (0, 4)

    add_dead_letters(site, CHANNEL, [{"type": "job.run"}] * 2)
    asked = client.post(f"{BASE}/deadletter/{CHANNEL}/purge/")
    assert "Delete all 2 dead letters" in text(asked)
    assert dead_count(site, CHANNEL) == 2
    client.post(f"{BASE}/deadletter/{CHANNEL}/purge/", {"confirm": "yes"})
    assert (dead_count(site, CHANNEL), queued(site, CHANNEL)) == (0, 4)
    assert log_entries().filter(change_message__startswith="Purged 2").count() == 1


def test_requeue_all_puts_back_a_bounded_number_per_post_newest_first(
    site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    letters = add_dead_letters(site, CHANNEL, [{"type": "job.run", "n": n} for n in range(5)])
    monkeypatch.setattr(dead_letter_pages, "MAX_REQUEUED_AT_ONCE", 2)
    monkeypatch.setattr(readers, "REQUEUE_WINDOW", 1)
    client = superuser()

    asked = client.post(f"{BASE}/deadletter/{CHANNEL}/requeue/", {"all": "1"})
    assert "the newest 2 of the 5 dead letters" in text(asked)
    done = client.post(
        f"{BASE}/deadletter/{CHANNEL}/requeue/", {"all": "1", "confirm": "yes"}, follow=True
    )

    assert (dead_count(site, CHANNEL), queued(site, CHANNEL)) == (3, 2)
    assert "Requeued 2 dead letter(s) on thumbnails-generate; 3 still there" in text(done)
    assert selectable(text(done)) == [letter.id for letter in reversed(letters[:3])]
    for left in (1, 0):
        client.post(f"{BASE}/deadletter/{CHANNEL}/requeue/", {"all": "1", "confirm": "yes"})
        assert dead_count(site, CHANNEL) == left


def test_requeue_all_steps_over_a_letter_whose_message_was_not_kept(
    site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_dead_letters(site, CHANNEL, [{"type": "job.run", "n": n} for n in range(2)])
    # No type and over the store's bound: only its record is kept, so it cannot be requeued.
    add_dead_letters(site, CHANNEL, [{"blob": "x" * (DEFAULT_MAX_UNDECODED_BYTES + 1)}])
    monkeypatch.setattr(readers, "REQUEUE_WINDOW", 1)

    done = superuser().post(
        f"{BASE}/deadletter/{CHANNEL}/requeue/", {"all": "1", "confirm": "yes"}, follow=True
    )

    assert (dead_count(site, CHANNEL), queued(site, CHANNEL)) == (1, 2)
    assert "Requeued 2 dead letter(s) on thumbnails-generate; 1 still there" in text(done)


@dataclass(frozen=True)
class Request:
    """A page or action of the section, of ``page``'s permissions; ``{channel}``, ``{letter}``
    and ``{result}`` in its path and form stand for the channel, a dead letter's id and a failed
    task result's id."""

    page: str
    method: str
    path: str
    form: tuple[tuple[str, str], ...] = ()
    #: What a superuser gets: the page (or confirmation page), or the redirect after acting.
    served: int = 200

    def send(self, client: Client, letter: str, result: str) -> Any:
        names = {"channel": CHANNEL, "letter": letter, "result": result}
        url = f"{BASE}/{self.path.format(**names)}"
        if self.method == "get":
            return client.get(url)
        return client.post(url, {key: value.format(**names) for key, value in self.form})


#: Every permission of the section, by page.
PERMISSIONS = {
    "channel": ("view_channel",),
    "worker": ("view_worker",),
    "deadletter": ("view_deadletter", "change_deadletter"),
    "taskresult": ("view_taskresult", "change_taskresult"),
    "schedule": ("view_schedule", "change_schedule"),
}
CONFIRMED = ("confirm", "yes")
SELECTED = ("_selected", "{letter}")
EVERY = ("all", "1")
REQUEUE = "deadletter/{channel}/requeue/"
PURGE = "deadletter/{channel}/purge/"
ENQUEUE = "taskresult/default/{result}/enqueue/"
#: The confirmation pages of the actions: a POST without ``confirm``.
CONFIRMATIONS = [
    pytest.param(Request("deadletter", "post", REQUEUE, (SELECTED,)), id="requeue-selected-ask"),
    pytest.param(Request("deadletter", "post", REQUEUE, (EVERY,)), id="requeue-all-ask"),
    pytest.param(Request("deadletter", "post", PURGE), id="purge-ask"),
    pytest.param(Request("taskresult", "post", ENQUEUE), id="enqueue-again-ask"),
]
CONFIRMED_ACTIONS = [
    pytest.param(
        Request("deadletter", "post", REQUEUE, (SELECTED, CONFIRMED), served=302),
        id="requeue-selected",
    ),
    pytest.param(
        Request("deadletter", "post", REQUEUE, (EVERY, CONFIRMED), served=302), id="requeue-all"
    ),
    pytest.param(Request("deadletter", "post", PURGE, (CONFIRMED,), served=302), id="purge"),
    pytest.param(
        Request("taskresult", "post", ENQUEUE, (CONFIRMED,), served=302), id="enqueue-again"
    ),
]
ACTIONS = [*CONFIRMATIONS, *CONFIRMED_ACTIONS]
SECTION = [
    pytest.param(Request("channel", "get", "channel/"), id="channels"),
    pytest.param(Request("worker", "get", "worker/"), id="workers"),
    pytest.param(Request("deadletter", "get", "deadletter/"), id="dead-letter-channels"),
    pytest.param(Request("deadletter", "get", "deadletter/{channel}/"), id="dead-letters"),
    pytest.param(
        Request("deadletter", "get", "deadletter/{channel}/letter/{letter}/"), id="dead-letter"
    ),
    pytest.param(Request("taskresult", "get", "taskresult/"), id="task-results"),
    pytest.param(Request("taskresult", "get", "taskresult/default/{result}/"), id="task-result"),
    pytest.param(Request("schedule", "get", "schedule/"), id="schedules"),
    *ACTIONS,
]


def permissions(*, but: str = "", only_view_of: str = "") -> tuple[str, ...]:
    """Every permission of the section, but those of page ``but``, and of page
    ``only_view_of`` its view permission alone."""
    return tuple(
        codename
        for page, codenames in PERMISSIONS.items()
        if page != but
        for codename in (codenames[:1] if page == only_view_of else codenames)
    )


def records_for(site: str, request: Request) -> tuple[str, str]:
    """(a dead letter's id, a failed task result's id) for ``request`` to name."""
    [letter] = add_dead_letters(site, CHANNEL, [{"type": "job.run", "secret": "hidden-body"}])
    result = failed_task_result() if "{result}" in request.path else "no-result"
    return letter.id, result


def assert_nothing_changed(site: str) -> None:
    """No letter requeued or purged, no task enqueued, nothing in the admin's log."""
    assert (dead_count(site, CHANNEL), queued(site, CHANNEL)) == (1, 0)
    assert queued(site, "tasks.default") == 0
    assert not log_entries().exists()


def assert_served_to_a_superuser(request: Request, letter: str, result: str) -> None:
    """The same request by a superuser is served: the refusal was the user's, not the URL's."""
    assert request.send(user("root", superuser=True), letter, result).status_code == (
        request.served
    )


@pytest.mark.parametrize("action", CONFIRMED_ACTIONS)
def test_actions_refuse_a_post_without_a_csrf_token(site: str, action: Request) -> None:
    letter, result = records_for(site, action)
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("csrf", password="pw"))

    response = action.send(client, letter, result)

    assert response.status_code == 403
    assert "CSRF verification failed" in text(response)
    assert_nothing_changed(site)


@pytest.mark.parametrize("target", SECTION)
def test_a_user_who_is_not_staff_gets_nothing_from_any_page_or_action(
    site: str, target: Request
) -> None:
    letter, result = records_for(site, target)
    visitor = user("visitor", staff=False, perms=permissions())

    response = target.send(visitor, letter, result)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")
    assert b"hidden-body" not in response.content
    assert_nothing_changed(site)
    assert_served_to_a_superuser(target, letter, result)


@pytest.mark.parametrize("target", SECTION)
def test_staff_without_a_page_permission_are_refused_its_every_page_and_action(
    site: str, target: Request
) -> None:
    letter, result = records_for(site, target)
    # Every permission of every other page: each page checks its own.
    clerk = user("clerk", perms=permissions(but=target.page))

    response = target.send(clerk, letter, result)

    assert response.status_code == 403
    assert b"hidden-body" not in response.content
    assert_nothing_changed(site)
    assert_served_to_a_superuser(target, letter, result)


@pytest.mark.parametrize("action", ACTIONS)
def test_a_viewer_may_not_post_an_action_nor_see_its_confirmation(
    site: str, action: Request
) -> None:
    letter, result = records_for(site, action)
    viewer = user("viewer", perms=permissions(only_view_of=action.page))

    response = action.send(viewer, letter, result)

    assert response.status_code == 403
    assert "Are you sure?" not in text(response)
    assert_nothing_changed(site)
    assert_served_to_a_superuser(action, letter, result)


def test_a_viewer_sees_dead_letters_but_cannot_requeue_or_purge(site: str) -> None:
    [letter] = add_dead_letters(site, CHANNEL, [{"type": "job.run"}])
    client = user("viewer", perms=("view_deadletter",))

    page = text(client.get(f"{BASE}/deadletter/{CHANNEL}/"))
    confirmed = {"_selected": [letter.id], "confirm": "yes"}
    requeue = client.post(f"{BASE}/deadletter/{CHANNEL}/requeue/", confirmed)
    purge = client.post(f"{BASE}/deadletter/{CHANNEL}/purge/", confirmed)

    assert letter.id in page
    assert "Requeue selected" not in page
    assert "Purge" not in page
    assert (requeue.status_code, purge.status_code) == (403, 403)
    assert (dead_count(site, CHANNEL), queued(site, CHANNEL)) == (1, 0)
    assert not log_entries().exists()


def failed_task_result() -> str:
    """The id of a task that failed in a real worker run (one attempt)."""
    from tests.worker.tasks_project.tasks import add, fail
    from worker.testing.drain import drain_sync

    result = fail.enqueue("<b>bad</b>")
    add.enqueue(1, 2)
    drain_sync(["tasks.default"])
    return str(result.id)


def test_task_results_are_listed_by_status_and_shown_with_their_errors(site: str) -> None:
    result_id = failed_task_result()
    client = user("viewer", perms=("view_taskresult",))

    listing = text(client.get(f"{BASE}/taskresult/"))
    failed_only = text(client.get(f"{BASE}/taskresult/?status=FAILED"))
    detail = text(client.get(f"{BASE}/taskresult/default/{result_id}/"))

    assert result_id in listing
    assert "SUCCESSFUL" in listing
    assert "FAILED" in listing
    assert result_id in failed_only
    assert "<td>SUCCESSFUL</td>" not in failed_only
    assert "tests.worker.tasks_project.tasks.fail" in detail
    assert "ValueError: boom: &lt;b&gt;bad&lt;/b&gt;" in detail
    assert "<b>bad</b>" not in detail
    assert "Enqueue again" not in detail
    assert client.post(f"{BASE}/taskresult/default/{result_id}/enqueue/").status_code == 403


def test_task_results_are_filtered_by_queue(site: str) -> None:
    from tests.worker.tasks_project.tasks import add

    on_default = str(add.enqueue(1, 2).id)
    on_other = str(add.using(queue_name="other").enqueue(3, 4).id)
    client = user("viewer", perms=("view_taskresult",))

    every = text(client.get(f"{BASE}/taskresult/"))
    other = text(client.get(f"{BASE}/taskresult/?queue=other"))
    default = text(client.get(f"{BASE}/taskresult/?queue=default"))
    nowhere = text(client.get(f"{BASE}/taskresult/?queue=nowhere"))

    assert on_default in every
    assert on_other in every
    assert on_other in other
    assert on_default not in other
    assert "<td>default</td>" not in other
    assert 'name="queue" value="other"' in other
    assert on_default in default
    assert on_other not in default
    assert on_default not in nowhere
    assert "No results matching the filter." in nowhere


def test_a_failed_task_is_enqueued_again_once_after_confirmation(site: str) -> None:
    result_id = failed_task_result()
    client = superuser()
    url = f"{BASE}/taskresult/default/{result_id}/enqueue/"

    assert "Enqueue again" in text(client.get(f"{BASE}/taskresult/default/{result_id}/"))
    asked = client.post(url)
    assert "Are you sure?" in text(asked)
    assert queued(site, "tasks.default") == 0
    done = client.post(url, {"confirm": "yes"})
    again = client.post(url, {"confirm": "yes"}, follow=True)

    new_id = done["Location"].rstrip("/").rsplit("/", 1)[-1]
    assert new_id != result_id
    assert again.redirect_chain[-1][0] == done["Location"]
    assert f"Already enqueued again as {new_id}" in text(again)
    assert queued(site, "tasks.default") == 1
    assert log_entries().get().change_message.endswith(f"again as {new_id}.")


def test_a_redis_that_cannot_answer_is_said_in_one_line_with_its_password_hidden() -> None:
    server = RedisServer(password=PASSWORD)
    url = server.url  # never started: nothing listens on its port
    with admin_installed(url):
        User.objects.all().delete()
        client = superuser()
        responses = [client.get(f"{BASE}/{page}/") for page in ("channel", "worker", "deadletter")]
    server.cleanup()
    for response in responses:
        assert response.status_code == 503
        page = text(response)
        assert f"Redis at redis://***@127.0.0.1:{server.port}/0 cannot answer" in page
        assert PASSWORD not in page


def test_a_layer_that_is_not_redis_is_named_on_the_page(site: str) -> None:
    in_memory = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=in_memory):
        response = superuser().get(f"{BASE}/channel/")
    assert response.status_code == 503
    assert "InMemoryChannelLayer" in text(response)


def test_a_tasks_backend_that_cannot_load_is_named_on_the_page(site: str) -> None:
    broken = {"default": {"BACKEND": "no.such.Backend"}}
    with override_settings(TASKS=broken):
        response = superuser().get(f"{BASE}/taskresult/")
    assert response.status_code == 503
    assert "TASKS[&#x27;default&#x27;] cannot be loaded" in text(response)


def test_a_result_shows_its_return_value_and_last_progress_report(site: str) -> None:
    from tests.worker.tasks_project.tasks import resize
    from worker.testing.drain import drain_sync

    result = resize.enqueue([64, 160])
    drain_sync(["tasks.default"])

    page = text(
        user("viewer", perms=("view_taskresult",)).get(f"{BASE}/taskresult/default/{result.id}/")
    )

    assert "SUCCESSFUL (attempt 1 of 1)" in page
    assert '<h2>return_value</h2><pre class="cw-pre">2</pre>' in page
    assert "2 of 2: 160 px (reported 20" in page
    assert "<h2>args</h2>" in page
