"""How ``status`` and the admin find live workers: by the workers' index, never by scanning a
database full of other keys; by SCAN only while no worker keeps the index (0.1.0 workers)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer
from redis.asyncio import Redis

from worker.admin import readers
from worker.ops.health import INDEX_GRACE_S, HealthRecord, HealthReporter
from worker.ops.metrics import NullMetrics
from worker.ops.stats import Stats
from worker.ops.status import live_workers
from worker.transport.keys import health_index_key, health_key

pytestmark = pytest.mark.redis

UNRELATED_KEYS = 100_000
INTERVAL_S = 5.0


def reporter(
    layer: RedisChannelLayer, client: Redis, worker_id: str, tmp_path: Path
) -> HealthReporter:
    """The health reporter of a worker ``worker_id`` serving ``jobs``, idle."""
    return HealthReporter(
        worker_id=worker_id,
        channels=["jobs"],
        prefix=layer.prefix,
        clients=[client],
        stats=Stats(),
        problem=lambda: None,
        in_flight=dict,
        completed=dict,
        metrics=NullMetrics(),
        interval_s=INTERVAL_S,
        directory=tmp_path / worker_id.replace(":", "-"),
    )


async def calls(client: Redis) -> dict[str, int]:
    """Commands Redis ran since the last ``CONFIG RESETSTAT``, by name, lower case."""
    stats: dict[str, Any] = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


async def fill_unrelated(client: Redis, count: int) -> None:
    """``count`` keys that are no worker's, as kept task results or sessions would be."""
    batch = 5_000
    for start in range(0, count, batch):
        await client.mset({f"other:{n}": "x" for n in range(start, min(count, start + batch))})


def ids(records: list[HealthRecord]) -> list[str]:
    return sorted(record.worker_id for record in records)


async def test_live_workers_are_read_by_key_from_the_index_among_100000_other_keys(
    layer: RedisChannelLayer, redis: Redis, tmp_path: Path
) -> None:
    await reporter(layer, redis, "web-1:11:aaaa", tmp_path).report()
    await reporter(layer, redis, "web-2:12:bbbb", tmp_path).report()
    await fill_unrelated(redis, UNRELATED_KEYS)
    assert await redis.dbsize() > UNRELATED_KEYS
    await redis.config_resetstat()

    found = await live_workers(layer, [redis])

    assert ids(found) == ["web-1:11:aaaa", "web-2:12:bbbb"]
    ran = await calls(redis)
    assert "scan" not in ran
    assert (ran.get("zrangebyscore"), ran.get("mget")) == (1, 1)


async def test_a_report_writes_the_index_entry_scored_by_when_its_record_expires(
    layer: RedisChannelLayer, redis: Redis, tmp_path: Path
) -> None:
    before = time.time()
    await reporter(layer, redis, "web-1:11:aaaa", tmp_path).report()

    score = await redis.zscore(health_index_key(layer.prefix), "web-1:11:aaaa")
    ttl_s = await redis.ttl(health_key(layer.prefix, "web-1:11:aaaa"))
    # Three intervals, as the record's TTL.
    assert score is not None
    assert before + 15 <= score <= time.time() + 15
    assert 0 < ttl_s <= 15


async def test_a_worker_that_stopped_reporting_is_dropped_from_the_index_by_the_next_report(
    layer: RedisChannelLayer, redis: Redis, tmp_path: Path
) -> None:
    index = health_index_key(layer.prefix)
    gone = reporter(layer, redis, "web-1:11:aaaa", tmp_path)
    await gone.report()
    # Killed: no more reports, and its record's TTL ran out long ago.
    await redis.zadd(index, {gone.worker_id: time.time() - INDEX_GRACE_S - 1})
    await redis.delete(health_key(layer.prefix, gone.worker_id))
    assert await live_workers(layer, [redis]) == []

    await reporter(layer, redis, "web-2:12:bbbb", tmp_path).report()

    assert await redis.zrange(index, 0, -1) == [b"web-2:12:bbbb"]
    assert ids(await live_workers(layer, [redis])) == ["web-2:12:bbbb"]


async def test_an_entry_whose_record_expired_within_the_grace_is_not_counted(
    layer: RedisChannelLayer, redis: Redis, tmp_path: Path
) -> None:
    await reporter(layer, redis, "web-1:11:aaaa", tmp_path).report()
    # The record's TTL ran out; its entry stays until a report after the grace drops it.
    await redis.delete(health_key(layer.prefix, "web-1:11:aaaa"))

    assert await live_workers(layer, [redis]) == []


async def test_a_stopped_worker_keeps_the_index_so_status_does_not_fall_back_to_scan(
    layer: RedisChannelLayer, redis: Redis, tmp_path: Path
) -> None:
    worker = reporter(layer, redis, "web-1:11:aaaa", tmp_path)
    await worker.report()
    await worker.remove()
    await redis.config_resetstat()

    assert await live_workers(layer, [redis]) == []
    assert await redis.get(health_key(layer.prefix, worker.worker_id)) is None
    assert await redis.zscore(health_index_key(layer.prefix), worker.worker_id) == 0
    assert "scan" not in await calls(redis)


async def test_status_scans_for_0_1_0_workers_until_an_upgraded_worker_keeps_the_index(
    layer: RedisChannelLayer, redis: Redis, tmp_path: Path
) -> None:
    old = HealthRecord("web-1:11:aaaa", 11, ["jobs"], INTERVAL_S, time.time(), True)
    # As 0.1.0 writes it: the record alone.
    await redis.set(health_key(layer.prefix, old.worker_id), old.to_json(), ex=15)
    await redis.config_resetstat()

    assert ids(await live_workers(layer, [redis])) == ["web-1:11:aaaa"]
    assert (await calls(redis)).get("scan", 0) >= 1

    await reporter(layer, redis, "web-2:12:bbbb", tmp_path).report()
    await redis.config_resetstat()

    # From the first upgraded worker's report on, the index is what counts (see the CHANGELOG).
    assert ids(await live_workers(layer, [redis])) == ["web-2:12:bbbb"]
    assert "scan" not in await calls(redis)


async def test_a_live_feed_push_reads_the_live_workers_once_for_both_pages(
    layer: RedisChannelLayer, redis: Redis, tmp_path: Path
) -> None:
    await reporter(layer, redis, "web-1:11:aaaa", tmp_path).report()
    await redis.config_resetstat()

    channels, workers = await readers.live_rows(layer, channels=True, workers=True)

    assert channels is not None
    assert [row.status.channel for row in channels] == ["jobs"]
    assert channels[0].status.live_workers == 1
    assert workers is not None
    assert [row.record.worker_id for row in workers] == ["web-1:11:aaaa"]
    assert (await calls(redis)).get("zrangebyscore") == 1


async def test_a_live_feed_push_reads_only_the_parts_asked_for(
    layer: RedisChannelLayer, redis: Redis, tmp_path: Path
) -> None:
    await reporter(layer, redis, "web-1:11:aaaa", tmp_path).report()

    only_workers = await readers.live_rows(layer, channels=False, workers=True)
    only_channels = await readers.live_rows(layer, channels=True, workers=False)

    assert only_workers[0] is None
    assert only_workers[1] is not None
    assert only_channels[0] is not None
    assert only_channels[1] is None
