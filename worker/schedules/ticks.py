"""When a schedule ticks: cron expressions in its time zone, or intervals aligned to the epoch.

Cron expressions are evaluated by cronsim, which follows Debian cron, daylight-saving changes
included: a time that does not exist on a spring-forward day (02:30 in Europe/Paris) runs once
at the first minute after the gap (03:00), and a time that happens twice on a fall-back day runs
once, at its first occurrence. ``every_s`` ticks are multiples of ``every_s`` since the Unix
epoch, so every replica computes the same ticks without talking to the others.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime

from cronsim import CronSim

from worker.schedules.definitions import Schedule


def next_tick(schedule: Schedule, after_s: float) -> float:
    """The first tick strictly after ``after_s`` (epoch seconds)."""
    if schedule.every_s is not None:
        return (math.floor(after_s / schedule.every_s) + 1) * schedule.every_s
    assert schedule.cron is not None
    start = datetime.fromtimestamp(math.floor(after_s), schedule.zone)
    return next(CronSim(schedule.cron, start)).timestamp()


def latest_tick(schedule: Schedule, at_s: float) -> float:
    """The last tick at or before ``at_s`` (epoch seconds)."""
    if schedule.every_s is not None:
        return math.floor(at_s / schedule.every_s) * schedule.every_s
    assert schedule.cron is not None
    # Reverse iteration steps back one second first, so start one second later.
    start = datetime.fromtimestamp(math.floor(at_s) + 1, schedule.zone)
    tick_s = next(CronSim(schedule.cron, start, reverse=True)).timestamp()
    # In the repeated hour of a fall-back day cronsim's reverse walk skips back past ticks its
    # forward walk fires (a day, for a fixed time). The loop fires the forward walk's ticks,
    # so step forward from there to the last of them at or before ``at_s``.
    while (following_s := next_tick(schedule, tick_s)) <= at_s:
        tick_s = following_s
    return tick_s


def fire_at(schedule: Schedule, tick_s: float) -> float:
    """When ``tick_s`` fires: the tick plus its jitter.

    The jitter is drawn from a hash of the schedule and the tick, not at random, so every
    replica waits the same time and the spread holds however many replicas there are.
    """
    if not schedule.jitter_s:
        return tick_s
    seed = hashlib.sha256(f"{schedule.name}:{schedule.digest}:{tick_s!r}".encode()).digest()
    fraction = int.from_bytes(seed[:8], "big") / 2**64
    return tick_s + fraction * schedule.jitter_s
