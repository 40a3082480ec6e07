"""Ticks: cron in a time zone across daylight-saving changes, epoch-aligned intervals, jitter."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from worker.schedules.definitions import Schedule
from worker.schedules.ticks import fire_at, latest_tick, next_tick

PARIS = ZoneInfo("Europe/Paris")


def cron(expression: str, **options: Any) -> Schedule:
    return Schedule(
        name="x", channel="c", cron=expression, timezone="Europe/Paris", digest="d", **options
    )


def ticks(schedule: Schedule, start: datetime, count: int) -> list[str]:
    found, cursor_s = [], start.timestamp()
    for _ in range(count):
        cursor_s = next_tick(schedule, cursor_s)
        found.append(datetime.fromtimestamp(cursor_s, PARIS).isoformat())
    return found


def test_a_daily_time_inside_the_spring_forward_gap_runs_once_right_after_it() -> None:
    # 2026-03-29 in Paris: 02:00 CET becomes 03:00 CEST, so 02:30 does not exist that day.
    assert ticks(cron("30 2 * * *"), datetime(2026, 3, 28, 12, tzinfo=PARIS), 3) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_a_daily_time_inside_the_repeated_fall_back_hour_runs_once() -> None:
    # 2026-10-25 in Paris: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice that day.
    assert ticks(cron("30 2 * * *"), datetime(2026, 10, 24, 12, tzinfo=PARIS), 3) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_an_every_half_hour_schedule_follows_elapsed_time_across_both_changes() -> None:
    # Like cron: the skipped hour has no ticks, and the repeated hour has its ticks twice.
    assert ticks(cron("*/30 * * * *"), datetime(2026, 3, 29, 1, 20, tzinfo=PARIS), 3) == [
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]
    assert ticks(cron("*/30 * * * *"), datetime(2026, 10, 25, 1, 50, tzinfo=PARIS), 4) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
    ]


def test_the_latest_tick_is_at_or_before_the_time_asked() -> None:
    schedule = cron("0 3 * * *")
    at = datetime(2026, 6, 1, 3, 0, tzinfo=PARIS).timestamp()
    assert latest_tick(schedule, at) == at
    assert latest_tick(schedule, at - 1) == at - 24 * 3600
    assert next_tick(schedule, at) == at + 24 * 3600


def test_intervals_are_multiples_of_every_s_since_the_epoch() -> None:
    schedule = Schedule(name="x", channel="c", every_s=300.0, digest="d")
    assert next_tick(schedule, 1_800_000_001.5) == 1_800_000_300.0
    assert next_tick(schedule, 1_800_000_300.0) == 1_800_000_600.0
    assert latest_tick(schedule, 1_800_000_299.9) == 1_800_000_000.0


def test_jitter_delays_each_tick_by_the_same_amount_on_every_replica() -> None:
    schedule = Schedule(name="x", channel="c", every_s=60.0, jitter_s=30.0, digest="d")
    delays = [fire_at(schedule, tick) - tick for tick in range(0, 60 * 200, 60)]
    assert all(0 <= delay < 30 for delay in delays)
    assert len({round(delay, 3) for delay in delays}) > 150  # spread, not one fixed offset
    assert fire_at(schedule, 600.0) == fire_at(schedule, 600.0)
    assert fire_at(Schedule(name="x", channel="c", every_s=60.0, digest="d"), 600.0) == 600.0


#: Each zone's changes of 2026, as UTC hours around which to look: spring forward, fall back.
DST_DAYS = {
    "Europe/Paris": [datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)],
    "America/New_York": [
        datetime(2026, 3, 8, 7, tzinfo=UTC),
        datetime(2026, 11, 1, 6, tzinfo=UTC),
    ],
    # A half-hour change.
    "Australia/Lord_Howe": [
        datetime(2026, 4, 4, 15, tzinfo=UTC),
        datetime(2026, 10, 3, 15, tzinfo=UTC),
    ],
}


@pytest.mark.parametrize("zone", sorted(DST_DAYS))
@pytest.mark.parametrize(
    "expression", ["30 2 * * *", "0 2 * * *", "30 1-3 * * *", "15 2,3 * * *", "*/30 * * * *"]
)
def test_the_latest_tick_is_the_last_tick_fired_even_in_a_repeated_hour(
    zone: str, expression: str
) -> None:
    """``latest_tick`` decides what a starting worker fires or skips: it must be one of the
    ticks the loop fires, or a worker starting in the repeated hour never finds its next tick."""
    schedule = Schedule(name="x", channel="c", cron=expression, timezone=zone, digest="d")
    for change in DST_DAYS[zone]:
        start_s, end_s = change.timestamp() - 6 * 3600, change.timestamp() + 6 * 3600
        fired, cursor_s = [], start_s - 2 * 86400
        while cursor_s < end_s:
            cursor_s = next_tick(schedule, cursor_s)
            fired.append(cursor_s)
        for at_s in range(int(start_s), int(end_s), 300):
            expected = max(tick_s for tick_s in fired if tick_s <= at_s)
            assert latest_tick(schedule, at_s) == expected, (
                f"{zone} {expression!r} at {datetime.fromtimestamp(at_s, UTC).isoformat()}"
            )
