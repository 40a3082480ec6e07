"""Our ``runworker`` against Channels' own: throughput, latency and memory on one redis-server.

Run from the repository root: ``python bench/bench_worker.py`` (``--quick`` for a smoke run,
``--big`` adds a 1,000,000-message backlog). Both workers run as subprocesses with the same
settings (``bench/worker_settings.py``), applications (``bench/worker_apps.py``) and messages.
Messages are staged under another key while a worker starts and renamed onto its channel at
once; a rate counts from the first handler start to the last handler end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from redis.utils import HIREDIS_AVAILABLE

from bench._processes import redis_server
from bench._worker_bench import (
    BACKLOG_KEY,
    QUICK,
    SETTINGS,
    Backlog,
    Bench,
    Rate,
    Sizes,
    channels_worker,
    dispatch_ceiling,
    our_worker,
)
from bench.worker_apps import noop_consumer, sleep_consumer
from worker.consume.event_loop import DEFAULT_LOOP, loop_factory, loop_name

CONCURRENCY = 100
LATENCY_CONCURRENCY = 10


@dataclass(frozen=True)
class Row:
    scenario: str
    channels: str
    ours: str
    ratio: str
    target: str
    missed: bool = False


def _rate(value: float) -> str:
    return f"{value:,.0f} msg/s"


def _mb(kb: int) -> str:
    return f"{kb / 1024:.1f} MB"


def _load() -> str:
    """Other processes compete for the same CPUs; the 1-minute load average shows how much."""
    return f"{os.getloadavg()[0]:.2f}"


def _default_loop() -> str:
    loop = loop_factory(DEFAULT_LOOP)()
    loop.close()
    return loop_name(loop)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def rate_row(scenario: str, channels: float, ours: float, target: float) -> Row:
    ratio = ours / channels
    return Row(
        scenario, _rate(channels), _rate(ours), f"{ratio:.1f}x", f">= {target:g}x", ratio < target
    )


def report_row(scenario: str, channels: float, ours: float) -> Row:
    return Row(scenario, _rate(channels), _rate(ours), f"{ours / channels:.1f}x", "report")


def cpu_row(scenario: str, channels: Rate, ours: Rate) -> Row:
    return Row(
        f"worker CPU time per message (user + system, all threads), {scenario}",
        f"{channels.cpu_us:.0f} µs",
        f"{ours.cpu_us:.0f} µs",
        f"{ours.cpu_us / channels.cpu_us:.2f}x",
        "",
    )


def consumer_rows(bench: Bench) -> list[Row]:
    """The no-op AsyncConsumer: one process each, the dispatch ceiling, two processes, RSS."""
    count = bench.sizes.noop
    # Channels' worker runs one instance per channel; ours runs CONCURRENCY of them.
    ceiling_one = dispatch_ceiling(noop_consumer, "bench.noop", count, 1, bench.sizes.trials)
    ceiling = dispatch_ceiling(noop_consumer, "bench.noop", count, CONCURRENCY, bench.sizes.trials)
    say(f"bare AsyncConsumer dispatch ceiling: {_rate(ceiling_one)} (1), {_rate(ceiling)} (many)")
    theirs, ours, at_most_once, two, plain_loop = bench.throughput(
        [
            (channels_worker(), count),
            (our_worker(CONCURRENCY), count),
            (our_worker(CONCURRENCY, delivery="at-most-once"), count),
            (our_worker(CONCURRENCY, processes=2), count),
            (our_worker(CONCURRENCY, loop="asyncio"), count),
        ],
        "noop_consumer",
    )
    say(
        f"no-op AsyncConsumer: Channels {_rate(theirs.rate)}, ours {_rate(ours.rate)}, "
        f"at-most-once {_rate(at_most_once.rate)}, 2 processes {_rate(two.rate)}, "
        f"--loop asyncio {_rate(plain_loop.rate)}"
    )
    name = f"no-op AsyncConsumer, {count:,} msgs"
    return [
        rate_row(
            f"{name}, 1 process (ours --concurrency {CONCURRENCY})", theirs.rate, ours.rate, 4
        ),
        rate_row(f"{name}, ours --delivery at-most-once", theirs.rate, at_most_once.rate, 4),
        report_row(f"{name}, ours --loop asyncio", theirs.rate, plain_loop.rate),
        Row(
            f"{name}: ours at-least-once (the default) / ours at-most-once",
            "",
            f"{_rate(ours.rate)} / {_rate(at_most_once.rate)}",
            f"{ours.rate / at_most_once.rate:.0%}",
            ">= 60%",
            ours.rate / at_most_once.rate < 0.6,
        ),
        Row(
            f"{name}: share of the bare dispatch ceiling (same consumer fed in-process from an "
            f"asyncio.Queue, no Redis; 1 instance for Channels, {CONCURRENCY} for ours)",
            f"{theirs.rate / ceiling_one:.0%} of {_rate(ceiling_one)}",
            f"{ours.rate / ceiling:.0%} of {_rate(ceiling)}",
            "",
            "",
        ),
        Row(
            f"{name}, ours --processes 2 (ratio: 2 processes / 1)",
            "",
            _rate(two.rate),
            f"{two.rate / ours.rate:.2f}x",
            "report",
        ),
        cpu_row(f"{name}, 1 process", theirs, ours),
        Row(
            f"peak RSS (VmHWM) of the worker process, {name}",
            _mb(theirs.peak_rss_kb),
            _mb(ours.peak_rss_kb),
            f"{ours.peak_rss_kb / theirs.peak_rss_kb:.2f}x",
            "",
        ),
    ]


def app_and_io_rows(bench: Bench) -> list[Row]:
    sizes = bench.sizes
    theirs, ours = bench.throughput(
        [(channels_worker(), sizes.noop), (our_worker(CONCURRENCY), sizes.noop)], "noop_app"
    )
    say(f"no-op ASGI app: Channels {_rate(theirs.rate)}, ours {_rate(ours.rate)}")
    io_theirs, io_ours, io_plain_loop = (
        result.rate
        for result in bench.throughput(
            [
                (channels_worker(), sizes.io_channels),
                (our_worker(CONCURRENCY), sizes.io_ours),
                (our_worker(CONCURRENCY, loop="asyncio"), sizes.io_ours),
            ],
            "sleep_consumer",
        )
    )
    io_ceiling = dispatch_ceiling(
        sleep_consumer, "bench.sleep", sizes.io_ours // 4, CONCURRENCY, sizes.trials
    )
    say(
        f"10 ms I/O handler: Channels {_rate(io_theirs)}, ours {_rate(io_ours)}, "
        f"--loop asyncio {_rate(io_plain_loop)}; in-process ceiling {_rate(io_ceiling)}"
    )
    return [
        rate_row(
            f"no-op plain ASGI app, {sizes.noop:,} msgs (ours --concurrency {CONCURRENCY})",
            theirs.rate,
            ours.rate,
            15,
        ),
        cpu_row(f"no-op plain ASGI app, {sizes.noop:,} msgs", theirs, ours),
        rate_row(
            f"10 ms I/O handler (Channels {sizes.io_channels:,} msgs; ours {sizes.io_ours:,}, "
            f"--concurrency {CONCURRENCY})",
            io_theirs,
            io_ours,
            50,
        ),
        report_row("10 ms I/O handler, ours --loop asyncio", io_theirs, io_plain_loop),
        Row(
            f"10 ms I/O handler: share of the same consumer's in-process ceiling "
            f"({CONCURRENCY} instances on an asyncio.Queue, no Redis)",
            "",
            f"{io_ours / io_ceiling:.0%} of {_rate(io_ceiling)}",
            f"ceiling / Channels: {io_ceiling / io_theirs:.1f}x",
            "",
        ),
    ]


def latency_rows(bench: Bench) -> list[Row]:
    sizes = bench.sizes
    theirs, ours, at_most_once = bench.latency(
        [
            channels_worker(),
            our_worker(LATENCY_CONCURRENCY),
            our_worker(LATENCY_CONCURRENCY, delivery="at-most-once"),
        ]
    )
    say(
        "latency p50/p99: "
        + ", ".join(
            f"{label} {p50:.2f}/{p99:.2f} ms"
            for label, (p50, p99) in (
                ("Channels", theirs),
                ("ours", ours),
                ("ours at-most-once", at_most_once),
            )
        )
    )
    rows = []
    for index, quantile in enumerate(("p50", "p99")):
        for flags, mine in (("", ours), (" --delivery at-most-once", at_most_once)):
            rows.append(
                Row(
                    f"latency {quantile}, send to handler start, {sizes.latency_rate:g} msg/s for "
                    f"{sizes.latency_s:g} s, median of {sizes.latency_trials} "
                    f"(ours --concurrency {LATENCY_CONCURRENCY}{flags})",
                    f"{theirs[index]:.2f} ms",
                    f"{mine[index]:.2f} ms",
                    f"{mine[index] / theirs[index]:.2f}x",
                    "",
                )
            )
    return rows


def backlog_rows(bench: Bench) -> list[Row]:
    sizes = bench.sizes
    started = time.monotonic()
    bench.stage(BACKLOG_KEY, sizes.backlog, "bench.sleep")
    say(f"staged {sizes.backlog:,} messages in {time.monotonic() - started:.1f} s")
    theirs = bench.backlog(channels_worker())
    ours = bench.backlog(our_worker(CONCURRENCY))

    def cell(result: Backlog) -> str:
        return (
            f"{_mb(result.idle_kb)} idle -> {_mb(result.last_kb)} "
            f"(max {_mb(result.peak_kb)}); {result.waiting:,} still in Redis"
        )

    say(f"backlog RSS: Channels {cell(theirs)}; ours {cell(ours)}")
    growth = [result.peak_kb - result.idle_kb for result in (theirs, ours)]
    return [
        Row(
            f"RSS while {sizes.backlog:,} msgs wait in Redis, 10 ms handler, after "
            f"{sizes.backlog_s} s (ours --concurrency {CONCURRENCY}); ratio: growth",
            cell(theirs),
            cell(ours),
            f"+{growth[0] / 1024:.1f} MB vs +{growth[1] / 1024:.1f} MB",
            "flat",
        )
    ]


def print_table(rows: list[Row]) -> None:
    print("| scenario | Channels | ours | ratio | target |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        target = f"{row.target} MISSED" if row.missed else row.target
        print(f"| {row.scenario} | {row.channels} | {row.ours} | {row.ratio} | {target} |")
    print()
    print("ratio: ours / Channels unless the scenario says otherwise.")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few messages, one trial: a smoke run")
    parser.add_argument(
        "--big", action="store_true", help="add the 1,000,000-message backlog memory scenario"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    sizes = QUICK if options.quick else Sizes()
    # Django runs in this process only for the in-process ceiling, on the in-memory layer.
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    import channels
    import django

    say(
        f"Python {sys.version.split()[0]}, Django {django.__version__}, channels "
        f"{channels.__version__}, {os.cpu_count()} CPUs, load average {_load()}; ours on the "
        f"{_default_loop()} event loop (--loop {DEFAULT_LOOP}), hiredis "
        f"{'installed' if HIREDIS_AVAILABLE else 'not installed'}; {sizes}"
    )
    logs = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    started = time.monotonic()
    with redis_server() as url:
        bench = Bench(url, sizes, logs)
        rows = consumer_rows(bench) + app_and_io_rows(bench) + latency_rows(bench)
        if options.big:
            rows += backlog_rows(bench)
    print_table(rows)
    command = " ".join(["python bench/bench_worker.py", *(argv or sys.argv[1:])])
    print(
        f"Reproduce: {command}  (took {time.monotonic() - started:.0f} s; load average at the "
        f"end {_load()}; worker logs in {logs})"
    )
    missed = [row.scenario for row in rows if row.missed]
    if missed:
        say(f"Targets missed: {'; '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
