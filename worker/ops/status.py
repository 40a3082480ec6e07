"""``channel-worker status``: each channel's queue, in-flight work, dead letters and workers."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from worker.ops.health import INDEX_GRACE_S, RATE_BUCKET_S, read_records, sample_channel
from worker.transport.keys import (
    ChannelKeys,
    health_index_key,
    health_key,
    health_key_pattern,
    rate_key,
)

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis
    from rich.table import Table

    from worker.ops.health import HealthRecord

THROUGHPUT_WINDOW_S = 60


@dataclass(slots=True)
class ChannelStatus:
    channel: str
    queued: int
    oldest_age_s: float
    in_flight: int
    delayed: int
    dead_letters: int
    live_workers: int
    completed_last_minute: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def live_workers(layer: RedisChannelLayer, clients: list[Redis]) -> list[HealthRecord]:
    """Health records of workers anywhere whose TTL has not run out.

    Read by key from the workers' index; only where no worker has written the index yet (all
    of them 0.1.0) found by scanning the database, whose cost grows with every key in it.
    """
    client = clients[0]
    index = health_index_key(layer.prefix)
    async with client.pipeline(transaction=False) as pipe:
        pipe.exists(index)
        pipe.zrangebyscore(index, time.time() - INDEX_GRACE_S, "+inf")
        indexed, worker_ids = await pipe.execute()
    if indexed:
        keys = [health_key(layer.prefix, _text(worker_id)) for worker_id in worker_ids]
    else:
        pattern = health_key_pattern(layer.prefix)
        keys = [key async for key in client.scan_iter(match=pattern, count=500)]
    values: Any = await client.mget(keys) if keys else []
    return read_records(values)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def gather(
    layer: RedisChannelLayer,
    clients: list[Redis],
    channels: list[str] | None = None,
    workers: list[HealthRecord] | None = None,
) -> list[ChannelStatus]:
    """One row per channel: those named, or every channel a live worker serves.

    ``workers`` are the ``live_workers()`` a caller already read; read here when not given.
    """
    now = time.time()
    if workers is None:
        workers = await live_workers(layer, clients)
    names = channels or sorted({channel for record in workers for channel in record.channels})
    rows = []
    for channel in names:
        keys = ChannelKeys.for_channel(layer.prefix, channel)
        sample = await sample_channel(clients, keys)
        delayed = dead = 0
        for client in clients:
            delayed += int(await client.zcard(keys.delayed))
            dead += int(await client.zcard(keys.dead))
        serving = [record for record in workers if channel in record.channels]
        rows.append(
            ChannelStatus(
                channel=channel,
                queued=sample.queued,
                oldest_age_s=round(sample.oldest_age_s(now), 3),
                in_flight=sum(record.in_flight.get(channel, 0) for record in serving),
                delayed=delayed,
                dead_letters=dead,
                live_workers=len(serving),
                completed_last_minute=await _completed_last_minute(layer, clients, channel, now),
            )
        )
    return rows


async def _completed_last_minute(
    layer: RedisChannelLayer, clients: list[Redis], channel: str, now: float
) -> int:
    return sum(await throughput(layer, clients, channel, now, THROUGHPUT_WINDOW_S))


async def throughput(
    layer: RedisChannelLayer, clients: list[Redis], channel: str, now: float, window_s: int
) -> list[int]:
    """Messages ``channel`` completed in each ``RATE_BUCKET_S`` of the last ``window_s``, oldest
    first (workers keep each bucket for two minutes)."""
    newest = int(now // RATE_BUCKET_S)
    buckets = range(newest - window_s // RATE_BUCKET_S + 1, newest + 1)
    values: Any = await clients[0].mget([rate_key(layer.prefix, channel, b) for b in buckets])
    return [int(value) if value is not None else 0 for value in values]


def table(rows: list[ChannelStatus]) -> Table:
    from rich.table import Table

    view = Table(title=f"channel-worker status at {time.strftime('%H:%M:%S')}")
    for heading in (
        "channel",
        "queued",
        "oldest age",
        "in flight",
        "retrying",
        "dead letters",
        "live workers",
        "done/min",
    ):
        view.add_column(heading, justify="left" if heading == "channel" else "right")
    for row in rows:
        view.add_row(
            row.channel,
            str(row.queued),
            f"{row.oldest_age_s:.1f} s",
            str(row.in_flight),
            str(row.delayed),
            str(row.dead_letters),
            str(row.live_workers),
            str(row.completed_last_minute),
        )
    if not rows:
        view.caption = "No live workers and no channels named."
    return view
