"""Measurements for ``bench_worker.py``: run a worker on staged messages, read its recorder.

A run stages its messages under another key, starts the worker, waits until every process has
loaded the application, then renames the key onto the channel, so the whole backlog appears at
once and start-up never counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from channels_redis.core import RedisChannelLayer

from bench import worker_apps
from bench._processes import ROOT, BenchError, WorkerProcess, running
from bench.worker_apps import LOADED_KEY, SUMMARY_KEY
from bench.worker_settings import layer_config
from routing.types import ASGIApp, Message
from worker.consume.event_loop import DEFAULT_LOOP, loop_factory

SETTINGS = "bench.worker_settings"
CHANNEL = "bench"
STAGING_KEY = "bench:staging"
BACKLOG_KEY = "bench:backlog"
STAGE_BATCH = 10_000
# After every process has loaded the application, time for it to connect and start polling.
SETTLE_S = 0.5
# How often each of several processes reports its count (one process reports once, at the end).
FLUSH_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Sizes:
    """Message counts, durations and trials of one benchmark run."""

    noop: int = 20_000
    io_channels: int = 500
    io_ours: int = 20_000
    latency_rate: float = 200.0
    latency_s: float = 5.0
    trials: int = 3
    # Latency percentiles move more between runs than rates do: more, shorter trials.
    latency_trials: int = 9
    backlog: int = 1_000_000
    backlog_s: int = 15


QUICK = Sizes(
    noop=2_000,
    io_channels=100,
    io_ours=2_000,
    latency_s=1.0,
    trials=1,
    latency_trials=1,
    backlog=100_000,
    backlog_s=5,
)


@dataclass(frozen=True)
class Contender:
    """One worker under test: its command line and how many processes it runs."""

    label: str
    command: tuple[str, ...]
    processes: int = 1


def channels_worker() -> Contender:
    return Contender("Channels", (sys.executable, "-m", "django", "runworker", CHANNEL))


def our_worker(
    concurrency: int, *, processes: int = 1, delivery: str | None = None, loop: str | None = None
) -> Contender:
    command = [sys.executable, "-m", "worker", CHANNEL, "--concurrency", str(concurrency)]
    if processes > 1:
        command += ["--processes", str(processes)]
    if delivery is not None:
        command += ["--delivery", delivery]
    if loop is not None:
        command += ["--loop", loop]
    return Contender("ours", tuple(command), processes)


@dataclass(frozen=True)
class Summary:
    """What the handlers of all of a worker's processes recorded."""

    count: int
    first_start: float
    last_end: float
    latencies_s: list[float]

    @property
    def rate(self) -> float:
        return self.count / (self.last_end - self.first_start)


@dataclass(frozen=True)
class Rate:
    rate: float
    peak_rss_kb: int
    #: CPU time of the worker process per message (all its threads): unlike the rate, it barely
    #: moves when other processes compete for the CPUs.
    cpu_us: float


@dataclass(frozen=True)
class Backlog:
    """Resident memory of a worker before and while a large backlog waits in Redis."""

    idle_kb: int
    peak_kb: int
    last_kb: int
    waiting: int


class Bench:
    """Runs one scenario at a time against the redis-server at ``url``."""

    def __init__(self, url: str, sizes: Sizes, logs: Path) -> None:
        self.url = url
        self.sizes = sizes
        self.logs = logs
        self.client = redis.Redis.from_url(url)
        self.layer = RedisChannelLayer(**layer_config(url))
        self.channel_key = self.layer.prefix + CHANNEL
        self._runs = 0

    @contextlib.contextmanager
    def start(
        self, contender: Contender, application: str, expected: int
    ) -> Iterator[WorkerProcess]:
        """Run ``contender`` on ``application`` until it has loaded it, plus a settling pause."""
        self.client.delete(SUMMARY_KEY, LOADED_KEY)
        env = {key: value for key, value in os.environ.items() if not key.startswith("BENCH_")}
        env |= {
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "BENCH_REDIS_URL": self.url,
            "BENCH_APPLICATION": application,
            "BENCH_EXPECTED": str(expected),
            "BENCH_FLUSH_INTERVAL_S": str(FLUSH_INTERVAL_S if contender.processes > 1 else 0),
        }
        self._runs += 1
        log = self.logs / f"{self._runs:02d}-{contender.label}-{application}.log"
        with running(contender.label, list(contender.command), env, log) as worker:
            deadline = time.monotonic() + 60.0
            while self._hlen(LOADED_KEY) < contender.processes:
                worker.check_alive()
                if time.monotonic() > deadline:
                    raise BenchError(f"{contender.label} did not load its application in 60 s.")
                time.sleep(0.05)
            time.sleep(SETTLE_S)
            worker.check_alive()
            yield worker

    def stage(self, key: str, count: int, message_type: str) -> None:
        """Queue ``count`` messages under ``key`` in channels-redis's format, scored now."""
        self.client.delete(key)
        for first in range(0, count, STAGE_BATCH):
            now = time.time()
            batch = range(first, min(count, first + STAGE_BATCH))
            self.client.zadd(
                key, {self.layer.serialize({"type": message_type, "n": n}): now for n in batch}
            )
        self.client.expire(key, int(self.layer.expiry))

    def wait_summary(self, worker: WorkerProcess, expected: int) -> Summary:
        deadline = time.monotonic() + 60.0 + expected / 50
        while True:
            summary = self.summary()
            if summary is not None and summary.count >= expected:
                return summary
            worker.check_alive()
            if time.monotonic() > deadline:
                got = summary.count if summary else 0
                raise BenchError(f"{worker.name} handled {got} of {expected} messages in time.")
            time.sleep(0.02)

    def summary(self) -> Summary | None:
        raw: Any = self.client.hgetall(SUMMARY_KEY)
        if not raw:
            return None
        parts = [json.loads(value) for value in raw.values()]
        return Summary(
            count=sum(part["count"] for part in parts),
            first_start=min(part["first_start"] for part in parts),
            last_end=max(part["last_end"] for part in parts),
            latencies_s=[value for part in parts for value in part.get("latencies_s", [])],
        )

    def _hlen(self, key: str) -> int:
        length: Any = self.client.hlen(key)
        return int(length)

    def throughput(self, runs: Sequence[tuple[Contender, int]], application: str) -> list[Rate]:
        """Median rate and highest peak RSS of each ``(contender, message count)`` run.

        Trials alternate between the contenders, so a change in machine load hits all alike.
        """
        trials: list[list[Rate]] = [[] for _ in runs]
        for _ in range(self.sizes.trials):
            for index, (contender, count) in enumerate(runs):
                trials[index].append(self._drain(contender, application, count))
        return [
            Rate(
                statistics.median(trial.rate for trial in results),
                max(trial.peak_rss_kb for trial in results),
                statistics.median(trial.cpu_us for trial in results),
            )
            for results in trials
        ]

    def _drain(self, contender: Contender, application: str, count: int) -> Rate:
        message_type = message_type_for(application)
        self.client.flushall()
        self.stage(STAGING_KEY, count, message_type)
        with self.start(contender, application, count) as worker:
            cpu_s = worker.cpu_s()
            self.client.rename(STAGING_KEY, self.channel_key)
            rate = self.wait_summary(worker, count).rate
            # A supervisor's own CPU time says nothing about its children's.
            cpu_us = (worker.cpu_s() - cpu_s) / count * 1e6 if contender.processes == 1 else 0.0
            return Rate(rate, worker.status_kb("VmHWM"), cpu_us)

    def latency(self, contenders: Sequence[Contender]) -> list[tuple[float, float]]:
        """Per contender, the median over the trials of p50 and p99 (ms) from send to start."""
        count = int(self.sizes.latency_rate * self.sizes.latency_s)
        p50s: list[list[float]] = [[] for _ in contenders]
        p99s: list[list[float]] = [[] for _ in contenders]
        for trial in range(self.sizes.latency_trials):
            # Each trial starts with the next contender, so none always runs after the same one.
            for step in range(len(contenders)):
                index = (trial + step) % len(contenders)
                contender = contenders[index]
                self.client.flushall()
                # One more message, sent first and left out, warms the worker's path up.
                with self.start(contender, "latency_consumer", count + 1) as worker:
                    asyncio.run(self._paced_send(count))
                    samples = self.wait_summary(worker, count + 1).latencies_s[1:]
                cuts = statistics.quantiles(samples, n=100, method="inclusive")
                p50s[index].append(cuts[49] * 1000)
                p99s[index].append(cuts[98] * 1000)
        return [
            (statistics.median(p50), statistics.median(p99))
            for p50, p99 in zip(p50s, p99s, strict=True)
        ]

    async def _paced_send(self, count: int) -> None:
        """Send through the layer at a steady rate, each deadline fixed from the start."""
        layer = RedisChannelLayer(**layer_config(self.url))
        interval_s = 1 / self.sizes.latency_rate
        try:
            await layer.send(CHANNEL, {"type": "bench.latency", "sent_at": time.time()})
            await asyncio.sleep(0.5)
            started = time.perf_counter()
            for n in range(count):
                delay_s = started + n * interval_s - time.perf_counter()
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                await layer.send(CHANNEL, {"type": "bench.latency", "sent_at": time.time()})
        finally:
            await layer.close_pools()

    def backlog(self, contender: Contender) -> Backlog:
        """RSS idle, then each second while the staged backlog waits on the channel."""
        self.client.delete(self.channel_key)
        with self.start(contender, "sleep_consumer", 0) as worker:
            idle_kb = worker.status_kb("VmRSS")
            # COPY is one atomic command: the whole backlog appears at once.
            self.client.copy(BACKLOG_KEY, self.channel_key)
            samples = []
            for _ in range(self.sizes.backlog_s):
                time.sleep(1.0)
                worker.check_alive()
                samples.append(worker.status_kb("VmRSS"))
            waiting: Any = self.client.zcard(self.channel_key)
        return Backlog(idle_kb, max(samples), samples[-1], int(waiting))


def message_type_for(application: str) -> str:
    return "bench.sleep" if application == "sleep_consumer" else "bench.noop"


async def _feed(application: ASGIApp, message_type: str, count: int, instances: int) -> None:
    """Dispatch ``count`` messages from one queue to ``instances`` instances; no Redis."""
    recorder = worker_apps.RECORDER
    queue: asyncio.Queue[Message] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait({"type": message_type, "n": n})
    done = asyncio.Event()

    async def receive() -> Message:
        # An instance asks for more only once its previous handler has finished.
        if recorder.count >= count:
            done.set()
        return await queue.get()

    async def send(message: Message) -> None:
        raise AssertionError(f"the benchmark consumer sent {message!r}")

    async def instance() -> None:
        await application({"type": "channel", "channel": CHANNEL}, receive, send)

    tasks = [asyncio.create_task(instance()) for _ in range(instances)]
    await done.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def dispatch_ceiling(
    application: ASGIApp, message_type: str, count: int, instances: int, trials: int
) -> float:
    """Best rate of unmodified consumer instances fed in-process (in-memory layer, no Redis).

    They run on the event loop ``runworker`` picks by default, as ours does in the benchmark.
    """
    import django

    django.setup()
    recorder = worker_apps.RECORDER
    # In this process the recorder only counts; it reports to no Redis.
    recorder.client = None
    best = 0.0
    for _ in range(trials):
        recorder.reset()
        with asyncio.Runner(loop_factory=loop_factory(DEFAULT_LOOP)) as runner:
            runner.run(_feed(application, message_type, count, instances))
        best = max(best, recorder.count / (recorder.last_end - recorder.first_start))
    return best
