"""Schedules in settings: each mistake is one line naming the schedule, the value and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from tests.docs.test_snippets import snippets_in
from tests.worker.schedule_helpers import CHANNEL, SWEEP, schedule_settings
from worker.errors import ConfigurationError
from worker.schedules.definitions import RUN_ONCE, SKIP, load_schedules
from worker.schedules.setup import project_schedules

URL = "redis://127.0.0.1:1/0"  # never connected to: checks need no Redis
ADD = "tests.worker.tasks_project.tasks.add"


def load(schedules: dict[str, Any]) -> Any:
    with schedule_settings(URL, schedules):
        from django.conf import settings

        return project_schedules(settings.CHANNEL_WORKER)


def test_a_task_schedule_is_checked_and_sent_to_its_queues_task_channel() -> None:
    schedule = load({"sum": {"task": ADD, "cron": "0 3 * * *", "kwargs": {"a": 1, "b": 2}}})["sum"]
    assert schedule.channel == "tasks.default"
    assert schedule.task == ADD
    assert dict(schedule.kwargs) == {"a": 1, "b": 2}
    assert schedule.missed == SKIP
    assert schedule.timezone == "UTC"


def test_a_channel_schedule_keeps_its_message_and_policy() -> None:
    schedule = load({"sweep": {**SWEEP, "every_s": 300, "missed": "run_once", "jitter_s": 5}})[
        "sweep"
    ]
    assert (schedule.channel, dict(schedule.message or {})) == (CHANNEL, {"type": "sweep.run"})
    assert (schedule.every_s, schedule.missed, schedule.jitter_s) == (300.0, RUN_ONCE, 5.0)


def test_a_changed_definition_has_another_digest() -> None:
    first = load({"sweep": {**SWEEP, "every_s": 300}})["sweep"]
    same = load({"sweep": {**SWEEP, "every_s": 300}})["sweep"]
    changed = load({"sweep": {**SWEEP, "every_s": 600}})["sweep"]
    assert first.digest == same.digest != changed.digest


def test_no_schedules_setting_means_no_schedules() -> None:
    with schedule_settings(URL, {}):
        assert project_schedules({}) == {}
        assert project_schedules(None) == {}


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        ({**SWEEP, "cron": "61 * * * *"}, r"Schedule 'x'.*'cron' '61 \* \* \* \*' is not a cron"),
        ({**SWEEP, "cron": "0 3 * *"}, r"'cron' '0 3 \* \*' is not a cron expression.*five fields"),
        ({**SWEEP, "cron": "0 0 30 2 *"}, r"Schedule 'x'.*'cron' '0 0 30 2 \*'"),
        ({**SWEEP, "cron": "0 3 * * *", "every_s": 60}, r"Schedule 'x' .* has both 'cron' and"),
        (dict(SWEEP), r"Schedule 'x' .* has neither 'cron' nor 'every_s'; add one"),
        ({**SWEEP, "every_s": 0}, r"'every_s' is 0; expected a number of seconds >= 1"),
        ({**SWEEP, "every_s": 0.001}, r"'every_s' is 0.001; expected a number of seconds >= 1"),
        ({**SWEEP, "cron": "0 0 3 * * *"}, r"'0 0 3 \* \* \*' is not a cron expression \(6 fields"),
        ({"task": ADD, "cron": "0 3 * * *", "kwargs": {"a": object()}}, r"must be JSON.*object"),
        ({**SWEEP, "every_s": "5"}, r"'every_s' is '5'; expected a number"),
        ({**SWEEP, "every_s": 5, "timezone": "Mars/Olympus"}, r"'timezone' 'Mars/Olympus' is not"),
        ({**SWEEP, "every_s": 5, "jitter_s": -1}, r"'jitter_s' is -1; expected a number of sec"),
        ({**SWEEP, "every_s": 5, "jitter_s": 5}, r"'jitter_s' 5 is not shorter than 'every_s' 5"),
        ({**SWEEP, "every_s": 5, "missed": "all"}, r"'missed' is 'all'; expected 'skip'"),
        ({**SWEEP, "every_s": 5, "cronn": "x"}, r"unknown key\(s\) 'cronn'; known keys:"),
        ({"task": "tests.nope.tasks.add", "every_s": 5}, r"Schedule 'x'.*Cannot import task"),
        (
            {"task": "tests.worker.tasks_project.tasks.not_a_task", "every_s": 5},
            r"Schedule 'x'.*'tests.worker.tasks_project.tasks.not_a_task' is a function, not a "
            r"task; decorate",
        ),
        ({"channel": "nowhere", "message": {"type": "a.b"}, "every_s": 5}, r"No consumer for "),
        ({"channel": CHANNEL, "message": {"type": "nope"}, "every_s": 5}, r"'nope'"),
        ({"channel": CHANNEL, "message": "sweep", "every_s": 5}, r"'message' is 'sweep'"),
        ({**SWEEP, "task": ADD, "every_s": 5}, r"exactly one of 'task'.*it has both"),
        ({"every_s": 5}, r"exactly one of 'task'.*it has neither"),
        ({**SWEEP, "every_s": 5, "kwargs": {}}, r"'kwargs' is for task schedules"),
    ],
)
def test_a_bad_schedule_is_refused_with_one_line_naming_it_and_the_fix(
    definition: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigurationError, match=expected) as raised:
        load({"x": definition})
    assert "\n" not in str(raised.value)


def test_a_channel_schedule_without_an_asgi_application_is_refused() -> None:
    """No runworker could serve the channel, so the schedule would never fire."""
    with (
        schedule_settings(URL, {}),
        override_settings(ASGI_APPLICATION=None),
        pytest.raises(ConfigurationError, match=r"Schedule 'x'.*'maintenance' has no consumer"),
    ):
        project_schedules({"SCHEDULES": {"x": {**SWEEP, "every_s": 5}}})


def test_a_task_schedule_needs_no_asgi_application() -> None:
    with schedule_settings(URL, {}), override_settings(ASGI_APPLICATION=None):
        schedules = project_schedules({"SCHEDULES": {"x": {"task": ADD, "every_s": 5}}})
    assert schedules["x"].channel == "tasks.default"


@pytest.mark.parametrize("name", ["", "has space", "x" * 101, 3])
def test_a_schedule_name_that_cannot_be_a_key_or_label_is_refused(name: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"has a schedule named .*; use ASCII letters"):
        load({name: {**SWEEP, "every_s": 5}})


def test_schedules_that_are_not_a_dict_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"'SCHEDULES'\] is a list; expected a dict"):
        project_schedules({"SCHEDULES": []})


SCHEDULES_PAGE = Path(__file__).resolve().parents[2] / "docs" / "schedules.md"


def test_the_schedules_on_the_schedules_page_pass_the_checks() -> None:
    """Their keys and values, given a project with those tasks and channels."""
    page = SCHEDULES_PAGE.read_text()
    declared: list[str] = []
    for snippet in snippets_in(page, SCHEDULES_PAGE):
        namespace: dict[str, Any] = {}
        exec(snippet.source, namespace)
        raw = namespace.get("CHANNEL_WORKER", {}).get("SCHEDULES")
        if raw is not None:
            schedules = load_schedules(
                raw, task_queue=lambda path: "default", channel_problem=lambda *_: None
            )
            declared += schedules
    assert declared == ["nightly-report", "sweep", "count"]
