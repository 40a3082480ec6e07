"""Health: a local record for ``runworker --check`` and a TTL'd record in Redis for ``status``.

The local file answers "is THIS replica's worker alive and serving its channels?" even while
Redis is down: a worker reconnecting to Redis is healthy (a restart would not help), a worker
whose listener died or whose event loop hangs is not. The Redis record lets
``channel-worker status`` count live workers anywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.errors import redis_fault
from worker.ops.health_files import (
    HEALTH_DIR_ENV,
    SETTINGS_ENV,
    default_base_dir,
    directory_problem,
    loaded_settings_file,
    prepare_dir,
    project_dir,
    projects_on_this_host,
    write_record,
)
from worker.ops.health_files import read_records as read_record_files
from worker.transport.keys import ChannelKeys, health_index_key, health_key, rate_key
from worker.transport.queue import queued_and_oldest

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline
    from redis.client import Pipeline as SyncPipeline

    from worker.ops.metrics import NullMetrics
    from worker.ops.stats import Stats

logger = logging.getLogger(__name__)

DEFAULT_HEALTH_INTERVAL_S = 5.0
# A record older than this many intervals means the worker stopped refreshing it.
STALE_AFTER_INTERVALS = 3
RATE_BUCKET_S = 10
#: Seconds an entry of the live workers' index outlives its record before a report drops it,
#: and how far back ``status`` reads it: room for the clocks of workers and readers to differ
#: (the record's own TTL, kept by Redis, says whether the worker is live).
INDEX_GRACE_S = 60.0


def health_dir(settings_module: str | None = None) -> Path:
    """Where this project's workers on this host keep their health files.

    ``CHANNEL_WORKER_HEALTH_DIR`` when set, else a directory per user and settings module
    (``DJANGO_SETTINGS_MODULE`` unless given), so a probe counts only its own project.
    """
    return project_dir(settings_module or os.environ.get(SETTINGS_ENV))


@dataclass(slots=True)
class HealthRecord:
    worker_id: str
    pid: int
    channels: list[str]
    interval_s: float
    updated_at: float
    healthy: bool
    problem: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    # The worker's DJANGO_SETTINGS_MODULE: --check counts only records of its own project.
    settings_module: str | None = None
    #: Where the worker's settings module is (resolved): two projects may share its name.
    settings_file: str | None = None
    #: When the worker started (epoch seconds), its event loop, and per channel its
    #: ``concurrency`` and ``delivery``: for the admin's Workers page.
    started_at: float | None = None
    event_loop: str | None = None
    channel_settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> HealthRecord:
        # Fields a later release adds are left out, so its workers still count here.
        known = {name: value for name, value in json.loads(text).items() if name in _FIELDS}
        return cls(**known)

    def stale(self, now: float) -> bool:
        return now - self.updated_at > STALE_AFTER_INTERVALS * self.interval_s


_FIELDS = frozenset(HealthRecord.__dataclass_fields__)


@dataclass(slots=True)
class ChannelSample:
    """A channel's queue as seen from Redis, for health, metrics and status."""

    queued: int = 0
    oldest_score: float | None = None

    def oldest_age_s(self, now: float) -> float:
        return max(0.0, now - self.oldest_score) if self.oldest_score is not None else 0.0


async def sample_channel(clients: Iterable[Redis], keys: ChannelKeys) -> ChannelSample:
    sample = ChannelSample()
    for client in clients:
        # Every priority level counts: the channel key holds only priority 0.
        queued, score = await queued_and_oldest(client, keys)
        sample.queued += queued
        if score is not None and (sample.oldest_score is None or score < sample.oldest_score):
            sample.oldest_score = score
    return sample


class HealthReporter:
    """Refreshes the health records every ``interval_s`` while the worker runs."""

    def __init__(
        self,
        *,
        worker_id: str,
        channels: list[str],
        prefix: str,
        clients: list[Redis],
        stats: Stats,
        problem: Callable[[], str | None],
        in_flight: Callable[[], dict[str, int]],
        completed: Callable[[], dict[str, int]],
        metrics: NullMetrics,
        interval_s: float = DEFAULT_HEALTH_INTERVAL_S,
        directory: Path | None = None,
        event_loop: str | None = None,
        channel_settings: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.channels = channels
        self.prefix = prefix
        self.clients = clients
        self.stats = stats
        self.problem = problem
        self.in_flight = in_flight
        self.completed = completed
        self.metrics = metrics
        self.interval_s = interval_s
        self.started_at = time.time()
        self.event_loop = event_loop
        self.channel_settings = channel_settings or {}
        self.settings_module = os.environ.get(SETTINGS_ENV)
        self.settings_file = loaded_settings_file(self.settings_module)
        self.path = (directory or health_dir(self.settings_module)) / f"{os.getpid()}.json"
        # Refused here, at start-up, rather than on every refresh.
        prepare_dir(self.path.parent)
        self._reported: dict[str, int] = {}
        self._logged_problem: str | None = None

    async def run(self) -> None:
        while True:
            await self.report()
            await asyncio.sleep(self.interval_s)

    async def report(self) -> None:
        problem = self.problem()
        record = HealthRecord(
            worker_id=self.worker_id,
            pid=os.getpid(),
            channels=self.channels,
            interval_s=self.interval_s,
            updated_at=time.time(),
            healthy=problem is None,
            problem=problem,
            counters=self.stats.as_dict(),
            in_flight=self.in_flight(),
            settings_module=self.settings_module,
            settings_file=self.settings_file,
            started_at=self.started_at,
            event_loop=self.event_loop,
            channel_settings=self.channel_settings,
        )
        self._write_local(record)
        if problem != self._logged_problem:
            # Once per problem, not once per report: an outage may last long.
            if problem is not None:
                logger.error("Worker unhealthy: %s", problem)
            else:
                logger.info("Worker healthy again")
            self._logged_problem = problem
        if problem is not None:
            return
        try:
            # Bounded, so a Redis that accepts connections but does not answer cannot stall
            # the local record: --check would call a worker waiting for Redis hung. The
            # TimeoutError this raises is an OSError, one of REDIS_DOWN.
            await asyncio.wait_for(self._write_redis(record), self.interval_s)
        except Exception as error:
            # Redis away or refusing writes (MISCONF, READONLY...): the pollers log the outage
            # once and the local record, written above, says what Redis refuses.
            if redis_fault(error) is None:
                raise
            logger.debug("Health record not written to Redis: %r", error)

    def _write_local(self, record: HealthRecord) -> None:
        write_record(self.path.parent, self.path.name, record.to_json())

    async def _write_redis(self, record: HealthRecord) -> None:
        ttl_s = max(1, round(STALE_AFTER_INTERVALS * self.interval_s))
        completed = self.completed()
        bucket = int(record.updated_at // RATE_BUCKET_S)
        client = self.clients[0]
        async with client.pipeline(transaction=False) as pipe:
            write_health(pipe, self.prefix, record, ttl_s)
            for channel, total in completed.items():
                delta = total - self._reported.get(channel, 0)
                if delta:
                    key = rate_key(self.prefix, channel, bucket)
                    pipe.incrby(key, delta)
                    pipe.expire(key, 120)
            await pipe.execute()
        self._reported = dict(completed)
        for channel in self.channels:
            sample = await sample_channel(
                self.clients, ChannelKeys.for_channel(self.prefix, channel)
            )
            self.metrics.sample(
                channel,
                record.in_flight.get(channel, 0),
                sample.queued,
                sample.oldest_age_s(record.updated_at),
            )

    async def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        try:
            async with self.clients[0].pipeline(transaction=False) as pipe:
                pipe.delete(health_key(self.prefix, self.worker_id))
                # Marked expired rather than removed, so the index outlives the last worker
                # and ``status`` never falls back to SCAN; the next report of any worker drops it.
                pipe.zadd(health_index_key(self.prefix), {self.worker_id: 0}, xx=True)
                await pipe.execute()
        except Exception as error:
            # Redis away or refusing writes (a full Redis refuses the ZADD, never the DEL): the
            # record expires by itself, and a stop must not fail on it.
            if redis_fault(error) is None:
                raise
            logger.debug("Health record not removed from Redis: %r", error)


def write_health(
    pipe: Pipeline | SyncPipeline, prefix: str, record: HealthRecord, ttl_s: int
) -> None:
    """Queue on ``pipe`` the worker's record with its TTL and its entry in the live workers'
    index, scored by when the record expires, and drop the entries of records expired for
    longer than ``INDEX_GRACE_S``: the index stays as small as the workers alive lately."""
    index = health_index_key(prefix)
    pipe.set(health_key(prefix, record.worker_id), record.to_json(), ex=ttl_s)
    pipe.zadd(index, {record.worker_id: record.updated_at + ttl_s})
    pipe.zremrangebyscore(index, "-inf", record.updated_at - INDEX_GRACE_S)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check(
    channels: list[str],
    directory: Path | None = None,
    settings_module: str | None = None,
    settings_file: str | None = None,
) -> tuple[bool, str]:
    """Whether the workers of this project on this host serve ``channels``, and one line why.

    Healthy when together they serve every channel and each one that serves any of them (each
    process of ``--processes``, each unit on the host) is alive and healthy. The project is
    ``settings_module`` (``DJANGO_SETTINGS_MODULE`` unless given) and, when known, the
    ``settings_file`` it is imported from. Records of other projects or other users, and links,
    are not counted; nor are records of another file, while those without one (written by 0.1.0
    workers) count by name.
    """
    settings_module = settings_module or os.environ.get(SETTINGS_ENV)
    if directory is None:
        if settings_module is None and not os.environ.get(HEALTH_DIR_ENV):
            return False, _unscoped_probe()
        directory = health_dir(settings_module)
    if os.path.lexists(directory) and (problem := directory_problem(directory)) is not None:
        return False, f"{problem}: its health records are not trusted"
    now = time.time()
    records, elsewhere = _by_file(_live_records(directory, settings_module), settings_file)
    if elsewhere and not records and settings_file is not None:
        return False, _elsewhere_line(elsewhere, settings_file, directory)
    # Every process of the project that serves one of the channels must be healthy: with
    # --processes, one hung child behind a healthy one is still a sick container.
    serving = [record for record in records if set(record.channels) & set(channels)]
    problems = [reason for record in serving if (reason := _record_problem(record, now))]
    if problems:
        return False, "; ".join(problems)
    served = {channel for record in serving for channel in record.channels}
    missing = [channel for channel in channels if channel not in served]
    if serving and not missing:
        return True, _healthy_line(serving)
    if not records:
        return False, f"no running worker on this host (no live health record in {directory})"
    return False, "; ".join(
        f"worker {record.worker_id} does not serve {', '.join(map(repr, missing))} "
        f"(serves {', '.join(map(repr, record.channels))})"
        for record in records
    )


def _by_file(
    records: Iterable[HealthRecord], settings_file: str | None
) -> tuple[list[HealthRecord], list[HealthRecord]]:
    """The records of workers of ``settings_file`` (or of no known file), and the others."""
    ours: list[HealthRecord] = []
    others: list[HealthRecord] = []
    for record in records:
        other = settings_file is not None and record.settings_file not in (None, settings_file)
        (others if other else ours).append(record)
    return ours, others


def _elsewhere_line(records: list[HealthRecord], settings_file: str, directory: Path) -> str:
    files = ", ".join(sorted({str(record.settings_file) for record in records}))
    return (
        f"no running worker of this project on this host: the {len(records)} in {directory} "
        f"import the settings module from {files}, not {settings_file}: another project with "
        f"a settings module of the same name (give each project its own {HEALTH_DIR_ENV}), or "
        "this one before it moved (restart its workers)"
    )


def _record_problem(record: HealthRecord, now: float) -> str | None:
    """Why this worker's record says it is not doing its job, or None."""
    if record.stale(now):
        return (
            f"worker {record.worker_id} last reported {now - record.updated_at:.0f} s ago "
            f"(every {record.interval_s:g} s expected): hung or stopped"
        )
    if not record.healthy:
        return f"worker {record.worker_id} is unhealthy: {record.problem}"
    return None


def _healthy_line(records: list[HealthRecord]) -> str:
    served = ", ".join(dict.fromkeys(channel for record in records for channel in record.channels))
    if len(records) == 1:
        return f"healthy: worker {records[0].worker_id} serving {served}"
    ids = ", ".join(record.worker_id for record in records)
    return f"healthy: {len(records)} workers ({ids}) serving {served}"


def _live_records(directory: Path, settings_module: str | None) -> Iterable[HealthRecord]:
    """The records in ``directory`` of live processes of the project, when one is named."""
    for text in read_record_files(directory):
        try:
            record = HealthRecord.from_json(text)
        except (ValueError, TypeError):
            continue
        if settings_module is not None and record.settings_module != settings_module:
            continue
        if pid_alive(record.pid):
            yield record


def _unscoped_probe() -> str:
    found = projects_on_this_host()
    where = (
        f" (this host has health records of {', '.join(found)} in {default_base_dir()})"
        if found
        else ""
    )
    return (
        "runworker --check needs the settings module of the workers to check, to count only "
        f"that project's: pass --settings mysite.settings or set {SETTINGS_ENV}{where}"
    )


def read_records(raw: Iterable[Any]) -> list[HealthRecord]:
    records = []
    for value in raw:
        if value is None:
            continue
        try:
            records.append(HealthRecord.from_json(value))
        except (ValueError, TypeError):
            continue
    return records
