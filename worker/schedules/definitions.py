"""Schedules as declared in ``CHANNEL_WORKER["SCHEDULES"]``, checked once at start-up.

::

    CHANNEL_WORKER = {
        "SCHEDULES": {
            "nightly-report": {"task": "reports.tasks.nightly", "cron": "0 3 * * *",
                               "timezone": "Europe/Paris", "kwargs": {"full": True}},
            "sweep": {"channel": "maintenance", "message": {"type": "sweep.run"}, "every_s": 300},
        }
    }

Every mistake is one line naming the schedule, the value and the fix, raised as a
``ConfigurationError`` before the worker starts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from worker.errors import ConfigurationError
from worker.names import TASK_MESSAGE_TYPE, task_channel

SKIP = "skip"
RUN_ONCE = "run_once"
#: What a schedule does about ticks that passed while no worker ran it.
MISSED_POLICIES = (SKIP, RUN_ONCE)
DEFAULT_TIMEZONE = "UTC"

_KEYS = {
    "task", "args", "kwargs", "channel", "message", "cron", "every_s", "timezone", "jitter_s",
    "missed", "layer",
}  # fmt: skip
# Schedule names become Redis keys and metric labels: short and plain.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_NAME_ACCEPTED = "ASCII letters, digits, '-', '_' and '.', at most 100 characters"
#: The shortest interval: each tick is a claim in Redis kept for minutes, so a tiny interval
#: would fill Redis and the task queue as fast as the workers can claim.
MIN_EVERY_S = 1.0
#: cronsim reads a sixth, leading field as seconds; its daylight-saving rules are not Debian
#: cron's then, and a tick a second is an ``every_s`` schedule's job.
_CRON_FIELDS = 5


@dataclass(frozen=True, slots=True)
class Schedule:
    """One checked schedule: when it ticks and what each tick sends."""

    name: str
    #: The channel its messages go to: ``channel``, or ``tasks.<queue_name>`` for a task.
    channel: str
    #: The ``@task`` import path, or None for a channel message.
    task: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    message: Mapping[str, Any] | None = None
    cron: str | None = None
    every_s: float | None = None
    timezone: str = DEFAULT_TIMEZONE
    jitter_s: float = 0.0
    missed: str = SKIP
    layer: str = "default"
    #: A hash of the definition: state kept under it is forgotten when the definition changes.
    digest: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def when(self) -> str:
        """The cadence for people: the cron expression and its zone, or the interval."""
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.timezone})"
        return f"every {self.every_s:g} s"


def load_schedules(
    raw: object,
    *,
    task_queue: Callable[[str], str],
    channel_problem: Callable[[str, str, Mapping[str, Any]], str | None],
) -> dict[str, Schedule]:
    """Check ``CHANNEL_WORKER["SCHEDULES"]`` and return its schedules by name.

    ``task_queue(path)`` gives the queue of the task at ``path`` or raises ``ValueError`` with
    the reason; ``channel_problem(channel, layer, message)`` says why ``message`` could not be
    sent to ``channel`` or no worker would handle it there, or None when all is well.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"CHANNEL_WORKER['SCHEDULES'] is a {type(raw).__name__}; expected a dict of name -> "
            "{'task': ..., 'cron': ...}, e.g. {'nightly': {'task': 'app.tasks.nightly', "
            "'cron': '0 3 * * *'}}."
        )
    return {
        name: _schedule(name, definition, task_queue, channel_problem)
        for name, definition in raw.items()
    }


def _schedule(
    name: object,
    definition: object,
    task_queue: Callable[[str], str],
    channel_problem: Callable[[str, str, Mapping[str, Any]], str | None],
) -> Schedule:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"CHANNEL_WORKER['SCHEDULES'] has a schedule named {name!r}; use {_NAME_ACCEPTED}, "
            "e.g. 'nightly-report'."
        )
    where = f"Schedule {name!r} (CHANNEL_WORKER['SCHEDULES'][{name!r}])"
    if not isinstance(definition, Mapping):
        raise ConfigurationError(
            f"{where} is a {type(definition).__name__}; expected a dict such as "
            "{'task': 'app.tasks.nightly', 'cron': '0 3 * * *'}."
        )
    unknown = sorted(map(str, set(definition) - _KEYS))
    if unknown:
        raise ConfigurationError(
            f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; known keys: "
            f"{', '.join(map(repr, sorted(_KEYS)))}."
        )
    layer = definition.get("layer", "default")
    if not isinstance(layer, str):
        raise ConfigurationError(f"{where}: 'layer' is {layer!r}; expected a CHANNEL_LAYERS alias.")
    timezone = _timezone(where, definition.get("timezone", DEFAULT_TIMEZONE))
    cron, every_s = _cadence(where, definition, timezone)
    target = _target(where, definition, layer, task_queue, channel_problem)
    jitter_s = _jitter(where, definition.get("jitter_s", 0.0))
    if every_s is not None and jitter_s >= every_s:
        raise ConfigurationError(
            f"{where}: 'jitter_s' {jitter_s:g} is not shorter than 'every_s' {every_s:g}, so "
            "ticks would overtake each other; use a jitter below the interval."
        )
    return Schedule(
        name=name,
        **target,
        cron=cron,
        every_s=every_s,
        timezone=timezone,
        jitter_s=jitter_s,
        missed=_missed(where, definition.get("missed", SKIP)),
        layer=layer,
        digest=_digest(definition),
    )


def _timezone(where: str, value: object) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"{where}: 'timezone' {value!r} is not a time zone; use an IANA name such as "
            "'Europe/Paris' or 'UTC'."
        ) from None
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}: 'timezone' is {value!r}; expected e.g. 'Europe/Paris'.")
    return value


def _cadence(
    where: str, definition: Mapping[str, Any], timezone: str
) -> tuple[str | None, float | None]:
    cron, every_s = definition.get("cron"), definition.get("every_s")
    if cron is not None and every_s is not None:
        raise ConfigurationError(
            f"{where} has both 'cron' and 'every_s'; keep one: a cron expression such as "
            "'0 3 * * *', or an interval in seconds such as 300."
        )
    if cron is None and every_s is None:
        raise ConfigurationError(
            f"{where} has neither 'cron' nor 'every_s'; add one, e.g. 'cron': '0 3 * * *' or "
            "'every_s': 300."
        )
    if every_s is not None:
        if not _positive_number(every_s) or every_s < MIN_EVERY_S:
            raise ConfigurationError(
                f"{where}: 'every_s' is {every_s!r}; expected a number of seconds >= "
                f"{MIN_EVERY_S:g}, e.g. 300."
            )
        return None, float(every_s)
    return _cron(where, cron, timezone), None


def _cron(where: str, cron: object, timezone: str) -> str:
    if not isinstance(cron, str):
        raise ConfigurationError(f"{where}: 'cron' is {cron!r}; expected e.g. '0 3 * * *'.")
    if len(cron.split()) != _CRON_FIELDS:
        raise ConfigurationError(
            f"{where}: 'cron' {cron!r} is not a cron expression ({len(cron.split())} fields); "
            "use five fields, minute hour day-of-month month day-of-week, e.g. '0 3 * * *' "
            "(03:00 every day), or 'every_s' for intervals under a minute."
        )
    try:
        next(CronSim(cron, datetime.now(ZoneInfo(timezone))))
    except CronSimError as error:
        raise ConfigurationError(
            f"{where}: 'cron' {cron!r} is not a cron expression ({error}); use five fields, "
            "minute hour day-of-month month day-of-week, e.g. '0 3 * * *' (03:00 every day)."
        ) from None
    except StopIteration:
        raise ConfigurationError(
            f"{where}: 'cron' {cron!r} matches no time in the next 50 years; check the day and "
            "month fields."
        ) from None
    return cron


def _target(
    where: str,
    definition: Mapping[str, Any],
    layer: str,
    task_queue: Callable[[str], str],
    channel_problem: Callable[[str, str, Mapping[str, Any]], str | None],
) -> dict[str, Any]:
    task, channel = definition.get("task"), definition.get("channel")
    if (task is None) == (channel is None):
        raise ConfigurationError(
            f"{where} needs exactly one of 'task' (a @task import path) or 'channel' (with a "
            "'message'); it has " + ("both." if task is not None else "neither.")
        )
    if task is not None:
        return _task_target(where, definition, task, layer, task_queue, channel_problem)
    message = definition.get("message")
    if not isinstance(channel, str):
        raise ConfigurationError(f"{where}: 'channel' is {channel!r}; expected e.g. 'maintenance'.")
    if not isinstance(message, Mapping) or not isinstance(message.get("type"), str):
        raise ConfigurationError(
            f"{where}: 'message' is {message!r}; expected a dict with a str 'type', e.g. "
            "{'type': 'sweep.run'}."
        )
    for key in ("args", "kwargs"):
        if key in definition:
            raise ConfigurationError(
                f"{where}: {key!r} is for task schedules; put the data in 'message' instead."
            )
    problem = channel_problem(channel, layer, message)
    if problem is not None:
        raise ConfigurationError(f"{where}: {problem}")
    return {"channel": channel, "message": dict(message)}


def _task_target(
    where: str,
    definition: Mapping[str, Any],
    task: object,
    layer: str,
    task_queue: Callable[[str], str],
    channel_problem: Callable[[str, str, Mapping[str, Any]], str | None],
) -> dict[str, Any]:
    if "message" in definition:
        raise ConfigurationError(
            f"{where}: 'message' is for channel schedules; give a task its 'args' and 'kwargs'."
        )
    if not isinstance(task, str):
        raise ConfigurationError(f"{where}: 'task' is {task!r}; expected e.g. 'app.tasks.nightly'.")
    try:
        queue_name = task_queue(task)
    except ValueError as error:
        raise ConfigurationError(f"{where}: {error}") from None
    args, kwargs = definition.get("args", ()), definition.get("kwargs", {})
    if not isinstance(args, list | tuple) or not isinstance(kwargs, Mapping):
        raise ConfigurationError(
            f"{where}: 'args' must be a list and 'kwargs' a dict (got {args!r} and {kwargs!r})."
        )
    _check_json(where, args, kwargs)
    channel = task_channel(queue_name)
    problem = channel_problem(channel, layer, {"type": TASK_MESSAGE_TYPE})
    if problem is not None:
        raise ConfigurationError(f"{where}: {problem}")
    return {"channel": channel, "task": task, "args": tuple(args), "kwargs": dict(kwargs)}


def _check_json(where: str, args: object, kwargs: object) -> None:
    """Tasks take JSON arguments: refuse others now rather than at every tick."""
    try:
        json.dumps([args, kwargs])
    except (TypeError, ValueError) as error:
        raise ConfigurationError(
            f"{where}: 'args' and 'kwargs' must be JSON (str, int, float, bool, None, lists and "
            f"dicts) because a task's arguments are; {error}."
        ) from None


def _jitter(where: str, value: object) -> float:
    if not _positive_number(value, allow_zero=True):
        raise ConfigurationError(
            f"{where}: 'jitter_s' is {value!r}; expected a number of seconds >= 0, e.g. 30."
        )
    return float(value)  # type: ignore[arg-type]  # checked just above


def _missed(where: str, value: object) -> str:
    if value not in MISSED_POLICIES:
        raise ConfigurationError(
            f"{where}: 'missed' is {value!r}; expected 'skip' (the default: ticks missed while "
            "no worker ran are dropped) or 'run_once' (the latest one runs once at the next start)."
        )
    return str(value)


def _positive_number(value: object, *, allow_zero: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return value >= 0 if allow_zero else value > 0


def _digest(definition: Mapping[str, Any]) -> str:
    """A short hash of the definition as written, so a change starts with fresh state."""
    text = json.dumps(definition, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


__all__ = ["MISSED_POLICIES", "RUN_ONCE", "SKIP", "Schedule", "load_schedules"]
