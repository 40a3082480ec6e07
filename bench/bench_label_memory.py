"""Memory of a metered worker under messages whose ``"type"`` is new every time.

Run from the repository root: ``python bench/bench_label_memory.py`` (``--types N`` to change
the 20,000). One ``runworker --metrics-port`` process on a throwaway redis-server first handles
as many messages of one type (warming it up), then as many messages of distinct types. The
resident memory after each part and the size of ``/metrics`` show whether the label values are
bounded: unbounded, every type would add series for the life of the process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench._processes import BenchError, WorkerProcess, _free_port, redis_server
from bench._worker_bench import CHANNEL, STAGING_KEY, Bench, Contender
from bench._worker_bench import QUICK as SIZES

DEFAULT_TYPES = 20_000
CONCURRENCY = 10
# No proxy from the environment for a loopback scrape.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Scrape:
    """One read of ``/metrics``."""

    size_bytes: int
    series: int
    completed: float


@dataclass(frozen=True)
class Reading:
    """The worker's resident memory and its endpoint after one part of the run."""

    label: str
    rss_kb: int
    scrape: Scrape


def scrape(port: int) -> Scrape:
    with _OPENER.open(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    series = 0
    completed = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series += 1
            if sample.name == "channel_worker_messages_completed_total":
                completed += sample.value
    return Scrape(len(text.encode()), series, completed)


def stage_types(bench: Bench, count: int, type_of: Callable[[int], str]) -> None:
    """Queue ``count`` messages under the staging key, message ``n`` of type ``type_of(n)``."""
    bench.client.delete(STAGING_KEY)
    batch_size = 10_000
    for first in range(0, count, batch_size):
        now = time.time()
        batch = range(first, min(count, first + batch_size))
        members = {bench.layer.serialize({"type": type_of(n), "n": n}): now for n in batch}
        bench.client.zadd(STAGING_KEY, members)


def handle(bench: Bench, worker: WorkerProcess, port: int, total: int) -> Scrape:
    """Move the staged messages onto the channel; the scrape once ``total`` have completed."""
    bench.client.rename(STAGING_KEY, bench.channel_key)
    deadline = time.monotonic() + 120.0
    while True:
        found = scrape(port)
        if found.completed >= total:
            return found
        worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"only {found.completed:.0f} of {total} messages completed in time")
        time.sleep(0.1)


def run(types: int, logs: Path) -> list[Reading]:
    port = _free_port()
    command = (
        sys.executable, "-m", "worker", CHANNEL,
        "--concurrency", str(CONCURRENCY),
        "--metrics-port", str(port),
    )  # fmt: skip
    readings = []
    with redis_server() as url:
        bench = Bench(url, SIZES, logs)
        # The recorder's own count is not used: the endpoint says when messages completed.
        with bench.start(Contender("ours", command), "noop_app", 0) as worker:
            readings.append(Reading("idle", worker.status_kb("VmRSS"), scrape(port)))
            stage_types(bench, types, lambda n: "bench.noop")
            found = handle(bench, worker, port, types)
            readings.append(Reading(f"{types:,} of one type", worker.status_kb("VmRSS"), found))
            stage_types(bench, types, lambda n: f"bench.distinct.{n}")
            found = handle(bench, worker, port, 2 * types)
            readings.append(
                Reading(f"then {types:,} distinct types", worker.status_kb("VmRSS"), found)
            )
    return readings


def report(readings: list[Reading]) -> None:
    print("| after | RSS (MB) | /metrics (KB) | series |")
    print("| --- | ---: | ---: | ---: |")
    for reading in readings:
        print(
            f"| {reading.label} | {reading.rss_kb / 1024:.1f} | "
            f"{reading.scrape.size_bytes / 1024:.1f} | {reading.scrape.series} |"
        )
    grown_mb = (readings[-1].rss_kb - readings[-2].rss_kb) / 1024
    print(f"\nRSS change over the distinct types: {grown_mb:+.1f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--types", type=int, default=DEFAULT_TYPES, help="distinct message types")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-labels-") as logs:
        try:
            readings = run(arguments.types, Path(logs))
        except BenchError as error:
            print(f"bench_label_memory: {error}", file=sys.stderr)
            return 1
    report(readings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
