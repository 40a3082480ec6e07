"""What the admin pages show, read with the worker's own readers: one sync call per page.

Every read opens its own connections to the layer's hosts and closes them, so a page served in
a thread of a WSGI or ASGI server shares nothing with another; lists are windows, counts are
``ZCARD``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import async_to_sync
from django.conf import settings

from worker.names import is_task_channel, is_valid_channel_name
from worker.ops.status import ChannelStatus, gather, live_workers, throughput
from worker.schedules import status as schedule_status
from worker.transport.dead_letters import DeadLetter, DeadLetters
from worker.transport.layer import connect

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis

    from worker.ops.health import HealthRecord
    from worker.schedules.definitions import Schedule
    from worker.schedules.status import ScheduleStatus

T = TypeVar("T")

#: The sparkline's span: workers keep their per-channel completion counts for two minutes.
SPARKLINE_WINDOW_S = 120
_BARS = "▁▂▃▄▅▆▇█"
#: Dead letters "requeue all" reads at a time (ids and records).
REQUEUE_WINDOW = 500


@dataclass(slots=True)
class ChannelRow:
    """A row of ``channel-worker status`` and the channel's recent throughput."""

    status: ChannelStatus
    #: Completions per ``RATE_BUCKET_S``, oldest first, over ``SPARKLINE_WINDOW_S``.
    throughput: list[int] = field(default_factory=list)

    @property
    def sparkline(self) -> str:
        return sparkline(self.throughput)

    def as_dict(self) -> dict[str, Any]:
        return self.status.as_dict() | {"sparkline": self.sparkline}


@dataclass(slots=True)
class WorkerRow:
    """A live worker's health record, and what its id says about where it runs."""

    record: HealthRecord
    host: str
    last_report_s: float
    stale: bool
    #: Seconds since the worker started; None for a worker that does not say.
    uptime_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        record = self.record
        return {
            "worker_id": record.worker_id,
            "host": self.host,
            "pid": record.pid,
            "channels": self.channels,
            "event_loop": record.event_loop or "-",
            "in_flight": sum(record.in_flight.values()),
            "uptime": _duration(self.uptime_s),
            "last_report_s": round(self.last_report_s, 1),
            "healthy": self.healthy,
            "problem": self.problem,
        }

    @property
    def healthy(self) -> bool:
        return self.record.healthy and not self.stale

    @property
    def channels(self) -> str:
        """Each channel with its concurrency and delivery, when the worker says them."""
        shown = []
        for channel in self.record.channels:
            settings = self.record.channel_settings.get(channel, {})
            if settings:
                channel += f" ({settings.get('concurrency')}, {settings.get('delivery')})"
            shown.append(channel)
        return ", ".join(shown)

    @property
    def problem(self) -> str:
        if self.stale:
            return f"no report for {self.last_report_s:.0f} s (every {self.record.interval_s:g} s)"
        return self.record.problem or ""


def sparkline(counts: list[int]) -> str:
    """``counts`` as bars scaled to the largest; flat when nothing was done."""
    top = max(counts, default=0)
    if top <= 0:
        return _BARS[0] * len(counts)
    return "".join(_BARS[round(count / top * (len(_BARS) - 1))] for count in counts)


def run(read: Callable[[], Awaitable[T]]) -> T:
    """Run an async read from a sync view."""

    async def call() -> T:
        return await read()

    return async_to_sync(call)()


@asynccontextmanager
async def _clients(layer: RedisChannelLayer) -> AsyncIterator[list[Redis]]:
    clients = connect(layer, 0.0)
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


async def channel_rows(layer: RedisChannelLayer) -> list[ChannelRow]:
    """What ``channel-worker status`` shows, for every channel a live worker serves."""
    async with _clients(layer) as clients:
        return await _channel_rows(layer, clients, await live_workers(layer, clients))


async def worker_rows(layer: RedisChannelLayer) -> list[WorkerRow]:
    async with _clients(layer) as clients:
        records = await live_workers(layer, clients)
    return _worker_rows(records)


async def live_rows(
    layer: RedisChannelLayer, *, channels: bool, workers: bool
) -> tuple[list[ChannelRow] | None, list[WorkerRow] | None]:
    """The Channels and Workers pages' rows, each only when asked for, from one read of the
    live workers on one set of connections: what one push of the live feed sends."""
    async with _clients(layer) as clients:
        records = await live_workers(layer, clients)
        channel_part = await _channel_rows(layer, clients, records) if channels else None
    return channel_part, _worker_rows(records) if workers else None


async def _channel_rows(
    layer: RedisChannelLayer, clients: list[Redis], records: list[HealthRecord]
) -> list[ChannelRow]:
    now = time.time()
    rows = await gather(layer, clients, workers=records)
    return [
        ChannelRow(row, await throughput(layer, clients, row.channel, now, SPARKLINE_WINDOW_S))
        for row in rows
    ]


def _worker_rows(records: list[HealthRecord]) -> list[WorkerRow]:
    now = time.time()
    records = sorted(records, key=lambda record: record.worker_id)
    return [
        WorkerRow(
            record,
            host=record.worker_id.split(":", 1)[0],
            last_report_s=max(0.0, now - record.updated_at),
            stale=record.stale(now),
            uptime_s=now - record.started_at if record.started_at is not None else None,
        )
        for record in records
    ]


def _duration(seconds: float | None) -> str:
    """``3 d 4 h``, ``2 h 5 min``, ``4 min 10 s`` or ``12 s``; ``-`` when not known."""
    if seconds is None:
        return "-"
    whole = int(max(0.0, seconds))
    days, hours, minutes = whole // 86400, whole % 86400 // 3600, whole % 3600 // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {whole % 60} s"
    return f"{whole} s"


def configured_channels() -> list[str]:
    """Channels named in ``CHANNEL_WORKER["CHANNELS"]`` (patterns left out)."""
    named = (getattr(settings, "CHANNEL_WORKER", None) or {}).get("CHANNELS") or {}
    return [str(name) for name in named if "*" not in str(name)]


async def dead_letter_counts(
    layer: RedisChannelLayer, also: Iterable[str] = ()
) -> list[tuple[str, int]]:
    """(channel, dead letters) for the channels live workers serve, configured ones and
    ``also``."""
    async with _clients(layer) as clients:
        records = await live_workers(layer, clients)
        served = {channel for record in records for channel in record.channels}
        names = sorted(served | set(configured_channels()) | set(also))
        store = DeadLetters(layer, clients)
        return [(channel, await store.count(channel)) for channel in names]


async def dead_letter_page(
    layer: RedisChannelLayer, channel: str, offset: int, limit: int
) -> tuple[Sequence[DeadLetter], int]:
    """A window of ``channel``'s dead letters, newest first, and how many there are.

    An ``offset`` past the end shows the last window.
    """
    async with _clients(layer) as clients:
        store = DeadLetters(layer, clients)
        total = await store.count(channel)
        offset = min(offset, max(0, (total - 1) // limit * limit))
        return await store.window(channel, offset, limit), total


async def dead_letter_count(layer: RedisChannelLayer, channel: str) -> int:
    async with _clients(layer) as clients:
        return await DeadLetters(layer, clients).count(channel)


async def dead_letter(layer: RedisChannelLayer, channel: str, letter_id: str) -> DeadLetter | None:
    async with _clients(layer) as clients:
        return await DeadLetters(layer, clients).show(channel, letter_id)


async def requeue(layer: RedisChannelLayer, channel: str, letter_ids: list[str]) -> int:
    """Requeue the letters named; a letter already requeued counts 0."""
    async with _clients(layer) as clients:
        store = DeadLetters(layer, clients)
        return sum([await store.requeue(channel, one) for one in letter_ids])


async def requeue_all(layer: RedisChannelLayer, channel: str, most: int) -> tuple[int, int]:
    """Requeue up to ``most`` of ``channel``'s dead letters, newest first, ``REQUEUE_WINDOW``
    at a time (never the whole list); (requeued, dead letters left)."""
    async with _clients(layer) as clients:
        store = DeadLetters(layer, clients)
        requeued = passed = 0
        while requeued + passed < most:
            window = await store.window(
                channel, passed, min(REQUEUE_WINDOW, most - requeued - passed)
            )
            if not window:
                break
            for letter in window:
                moved = await store.requeue(channel, letter.id)
                requeued += moved
                # One that stays (its message was not kept) is stepped over, not read again.
                passed += 1 - moved
        return requeued, await store.count(channel)


async def purge(layer: RedisChannelLayer, channel: str) -> int:
    async with _clients(layer) as clients:
        return await DeadLetters(layer, clients).purge(channel)


def valid_channel(layer: RedisChannelLayer, channel: str) -> bool:
    """Whether ``channel`` is a channel name the worker could serve (a task channel too)."""
    return is_task_channel(channel) or is_valid_channel_name(layer, channel, process_local=False)


async def schedule_rows(
    layer: RedisChannelLayer, schedules: list[Schedule]
) -> list[ScheduleStatus]:
    """What ``channel-worker schedules`` shows for ``schedules``: a hash read per schedule, and
    for a task its result."""
    async with _clients(layer) as clients:
        return await schedule_status.gather(layer, clients, schedules, time.time())


async def run_schedule(
    layer: RedisChannelLayer, schedule: Schedule, token: str, by: str
) -> tuple[str, bool]:
    """Fire ``schedule`` now as ``channel-worker schedules run`` does, once per ``token``."""
    async with _clients(layer) as clients:
        return await schedule_status.trigger_once(layer, clients, schedule, time.time(), token, by)
