"""What one tick does: enqueue the schedule's task through its backend, or send its message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.schedules.definitions import Schedule
from worker.sending.api import asend
from worker.tasks.results import load_task

#: Keys added to a channel schedule's message: which schedule sent it, and for which tick
#: (epoch seconds), so a handler can tell a tick's second delivery from the next tick.
SCHEDULE_KEY = "__schedule__"
TICK_KEY = "__tick__"

SENT = "sent"
ENQUEUED = "enqueued"


@dataclass(frozen=True, slots=True)
class Fired:
    """What a tick did: ``sent`` a message, or ``enqueued`` a task with its result id."""

    outcome: str
    result_id: str = ""


async def fire(schedule: Schedule, tick_s: float) -> Fired:
    """Enqueue or send once for ``tick_s``; raises what the backend or ``asend()`` raises."""
    if schedule.task is not None:
        task = load_task(schedule.task)
        # Through the task's own backend, so its results, retries and priority apply.
        result = await task.aenqueue(*schedule.args, **schedule.kwargs)
        return Fired(ENQUEUED, result.id)
    assert schedule.message is not None
    message: dict[str, Any] = {**schedule.message, SCHEDULE_KEY: schedule.name, TICK_KEY: tick_s}
    await asend(schedule.channel, message, layer=schedule.layer)
    return Fired(SENT)
