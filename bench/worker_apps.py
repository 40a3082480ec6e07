"""The applications ``bench_worker.py`` runs under both runworkers, and their in-memory recorder.

Handlers note ``time.perf_counter()`` (CLOCK_MONOTONIC, comparable across processes) and a count
in memory; the recorder writes a summary to a Redis hash only when the expected count is reached
and, when several processes share the count, every ``BENCH_FLUSH_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import redis
from channels.consumer import AsyncConsumer

from routing.types import Receive, Scope, Send

#: Hash of process id to that process's JSON summary.
SUMMARY_KEY = "bench:summary"
#: Hash of the ids of processes that loaded this module (the worker is about to consume).
LOADED_KEY = "bench:loaded"
SLEEP_S = 0.01


class Recorder:
    """First handler start, last handler end, a count and (optionally) latencies, per process."""

    def __init__(self, url: str | None, expected: int, flush_interval_s: float) -> None:
        self.expected = expected
        self.flush_interval_s = flush_interval_s
        self.client = redis.Redis.from_url(url) if url else None
        if self.client is not None:
            # Connecting now also keeps the connection set-up off the handlers' clock.
            self.client.hset(LOADED_KEY, str(os.getpid()), "1")
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.first_start = 0.0
        self.last_end = 0.0
        self.latencies_s: list[float] = []

    def begin(self) -> None:
        """Mark a handler start; only the first one is kept."""
        if not self.first_start:
            self.first_start = time.perf_counter()

    def end(self) -> None:
        """Mark a handler end."""
        now = time.perf_counter()
        if not self.first_start:
            self.first_start = now
        self.last_end = now
        self.count += 1
        if self.count == self.expected:
            self.flush()
        elif self.count == 1 and self.flush_interval_s:
            asyncio.get_running_loop().call_later(self.flush_interval_s, self._flush_again)

    def latency(self, sent_at: float) -> None:
        self.latencies_s.append(time.time() - sent_at)

    def flush(self) -> None:
        if self.client is None:
            return
        summary: dict[str, Any] = {
            "count": self.count,
            "first_start": self.first_start,
            "last_end": self.last_end,
        }
        if self.count == self.expected:
            summary["latencies_s"] = self.latencies_s
        self.client.hset(SUMMARY_KEY, str(os.getpid()), json.dumps(summary))

    def _flush_again(self) -> None:
        self.flush()
        asyncio.get_running_loop().call_later(self.flush_interval_s, self._flush_again)


RECORDER = Recorder(
    os.environ.get("BENCH_REDIS_URL"),
    int(os.environ.get("BENCH_EXPECTED", "0")),
    float(os.environ.get("BENCH_FLUSH_INTERVAL_S", "0")),
)


class NoopConsumer(AsyncConsumer):  # type: ignore[misc]
    """A no-op handler: the cost measured is the worker's and the consumer's, nothing else."""

    async def bench_noop(self, message: dict[str, Any]) -> None:
        RECORDER.end()


class SleepConsumer(AsyncConsumer):  # type: ignore[misc]
    """A handler waiting 10 ms on I/O, as a call to another service would."""

    async def bench_sleep(self, message: dict[str, Any]) -> None:
        RECORDER.begin()
        await asyncio.sleep(SLEEP_S)
        RECORDER.end()


class LatencyConsumer(AsyncConsumer):  # type: ignore[misc]
    """Notes how long after its ``sent_at`` (``time.time()``) each message started."""

    async def bench_latency(self, message: dict[str, Any]) -> None:
        RECORDER.latency(message["sent_at"])
        RECORDER.end()


async def noop_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A plain ASGI application that takes every message and does nothing with it."""
    while True:
        await receive()
        RECORDER.end()


noop_consumer = NoopConsumer.as_asgi()
sleep_consumer = SleepConsumer.as_asgi()
latency_consumer = LatencyConsumer.as_asgi()
