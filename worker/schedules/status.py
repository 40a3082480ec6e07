"""What ``channel-worker schedules`` shows, and ``schedules run NAME``: read from Redis only.

For each schedule: its next run, its last run and which worker fired it, the outcome (for a task,
its result's status now), the last error, and whether a tick has passed that no worker fired.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from worker.names import process_id
from worker.schedules.claims import SCHEDULE_HOST_INDEX, TickClaims
from worker.schedules.fire import fire
from worker.schedules.loop import DEFAULT_CLAIM_LEASE_S
from worker.schedules.ticks import fire_at, latest_tick, next_tick
from worker.tasks.results import load_task, shown_status
from worker.transport.keys import schedule_run_key

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis

    from worker.schedules.definitions import Schedule

#: ``last_worker`` of a run triggered with ``channel-worker schedules run``.
TRIGGERED_BY = "channel-worker schedules run"
#: How long a "run now" token is kept: a second post of its form within this shows the first run.
RUN_TOKEN_LIFETIME_S = 3600
#: What a "run now" token holds while its run is under way.
RUN_UNDER_WAY = "under way"


@dataclass(frozen=True, slots=True)
class ScheduleStatus:
    """One row of ``channel-worker schedules``; times are ISO 8601 in the schedule's zone."""

    name: str
    #: The task's import path, or the channel a message goes to.
    target: str
    when: str
    missed: str
    next_run: str
    last_run: str | None
    last_worker: str | None
    #: ``sent``, ``enqueued``, ``skipped``; for a task, its result's status now when known.
    outcome: str | None
    last_error: str | None
    #: A tick has passed since the last run and no worker has fired it yet.
    due: bool
    #: The id of the last run's task result, for a task schedule that enqueued one.
    result_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def on_layer(schedules: Iterable[Schedule], layer_alias: str) -> list[Schedule]:
    """The schedules that ``layer_alias`` serves: what ``schedules`` lists and can run."""
    return [schedule for schedule in schedules if schedule.layer == layer_alias]


def _claims(layer: RedisChannelLayer, clients: list[Redis], schedule: Schedule) -> TickClaims:
    first_s = next_tick(schedule, 0.0)
    period_s = next_tick(schedule, first_s) - first_s
    client = clients[SCHEDULE_HOST_INDEX]
    return TickClaims(client, layer.prefix, schedule, DEFAULT_CLAIM_LEASE_S, period_s)


async def gather(
    layer: RedisChannelLayer, clients: list[Redis], schedules: list[Schedule], now_s: float
) -> list[ScheduleStatus]:
    """The status of each of ``schedules`` at ``now_s``."""
    return [await _status(layer, clients, schedule, now_s) for schedule in schedules]


async def _status(
    layer: RedisChannelLayer, clients: list[Redis], schedule: Schedule, now_s: float
) -> ScheduleStatus:
    state = await _claims(layer, clients, schedule).state()
    last_tick_s = float(state.get("last_tick", "-inf"))
    first_seen_s = float(state.get("first_seen", repr(now_s)))
    last_run = state.get("last_run_at")
    return ScheduleStatus(
        name=schedule.name,
        target=schedule.task or schedule.channel,
        when=schedule.when,
        missed=schedule.missed,
        next_run=_time(fire_at(schedule, next_tick(schedule, now_s)), schedule),
        last_run=_time(float(last_run), schedule) if last_run else None,
        last_worker=state.get("last_worker"),
        outcome=await _outcome(schedule, state),
        last_error=_error_since_last_run(state),
        due=_latest_fire_due(schedule, now_s) > max(last_tick_s, first_seen_s),
        result_id=state.get("last_result_id") or None,
    )


def _latest_fire_due(schedule: Schedule, now_s: float) -> float:
    """The latest tick whose time to fire, jitter included, has come by ``now_s``."""
    tick_s = latest_tick(schedule, now_s)
    if fire_at(schedule, tick_s) > now_s:
        return latest_tick(schedule, tick_s - 1)
    return tick_s


def _error_since_last_run(state: dict[str, str]) -> str | None:
    error_at_s = float(state.get("last_error_at", "-inf"))
    return state.get("last_error") if error_at_s > float(state.get("last_run_at", "-inf")) else None


async def _outcome(schedule: Schedule, state: dict[str, str]) -> str | None:
    outcome = state.get("last_outcome")
    result_id = state.get("last_result_id")
    if schedule.task is None or not result_id:
        return outcome
    return await task_status(schedule.task, result_id)


async def task_status(path: str, result_id: str) -> str:
    """The status of a scheduled task's result, through its backend; ``EXPIRED`` once gone."""
    from worker.tasks.backend import ChannelLayerBackend
    from worker.tasks.compat import TaskResultDoesNotExist

    backend = load_task(path).get_backend()
    if isinstance(backend, ChannelLayerBackend):
        record = await backend.store.aload(result_id)
        return shown_status(record) if record is not None else "EXPIRED"
    try:
        result = await backend.aget_result(result_id)
    except TaskResultDoesNotExist:
        return "EXPIRED"
    return str(result.status)


async def trigger(
    layer: RedisChannelLayer,
    clients: list[Redis],
    schedule: Schedule,
    now_s: float,
    by: str = TRIGGERED_BY,
) -> str:
    """Fire ``schedule`` once now, outside its ticks, and record the run as ``by``'s; what it
    did."""
    fired = await fire(schedule, now_s)
    by = f"{by} ({process_id()})"
    await _claims(layer, clients, schedule).record_manual(now_s, by, fired.outcome, fired.result_id)
    return fired.outcome + (f" (result {fired.result_id})" if fired.result_id else "")


async def trigger_once(
    layer: RedisChannelLayer,
    clients: list[Redis],
    schedule: Schedule,
    now_s: float,
    token: str,
    by: str,
) -> tuple[str, bool]:
    """``trigger`` once per ``token``: what the run did, and whether this call made it.

    The token is claimed in Redis before the run, so a second call with it (a form posted
    twice) fires nothing and answers what the first did, or that it is under way. A run that
    raises frees its token, so the same confirmation can try again.
    """
    client = clients[SCHEDULE_HOST_INDEX]
    key = schedule_run_key(layer.prefix, schedule.name, token)
    if not await client.set(key, RUN_UNDER_WAY, nx=True, ex=RUN_TOKEN_LIFETIME_S):
        done = await client.get(key)
        return (done.decode() if isinstance(done, bytes) else str(done or RUN_UNDER_WAY)), False
    try:
        done = await trigger(layer, clients, schedule, now_s, by)
    except BaseException:
        await client.delete(key)
        raise
    await client.set(key, done, ex=RUN_TOKEN_LIFETIME_S)
    return done, True


def _time(epoch_s: float, schedule: Schedule) -> str:
    return datetime.fromtimestamp(epoch_s, schedule.zone).isoformat(timespec="seconds")


def lines(rows: list[ScheduleStatus]) -> list[str]:
    """``rows`` for the terminal: a block per schedule, readable at any width."""
    if not rows:
        return ["No schedules: CHANNEL_WORKER['SCHEDULES'] is empty (see the Schedules page)."]
    shown: list[str] = []
    for row in rows:
        last = "never"
        if row.last_run is not None:
            last = f"{row.last_run} by {row.last_worker or '?'}: {row.outcome or '?'}"
        shown += [
            row.name,
            f"  target    {row.target}",
            f"  when      {row.when}; missed ticks: {row.missed}",
            f"  next run  {row.next_run}",
            f"  last run  {last}",
            *([f"  error     {row.last_error}"] if row.last_error else []),
            f"  due       {'yes: a tick passed and no worker fired it yet' if row.due else 'no'}",
        ]
    return shown
