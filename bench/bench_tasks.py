"""Our ``django.tasks`` backend against threadmill and huey's ``HueyBackend`` on one redis-server.

Run from the repository root: ``python bench/bench_tasks.py`` (``--quick`` for a smoke run,
``--only SCENARIO`` for one scenario, repeated for several, ``--tasks N --trials K``). The peers
come from the ``bench`` dependency group (``uv sync --group bench``); a peer that is not
installed is skipped with one line. Every backend runs the same task functions
(``bench/task_functions.py``) with the same settings (``bench/task_settings.py``), one worker
process each, trials alternating. A trial enqueues its tasks from a process of its own
(``bench/task_enqueue.py``), then starts the worker; a rate counts from the first task's start
to the last task's end, and the worker's CPU time (all its processes and threads) from its first
task on.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from bench._processes import ROOT, BenchError, WorkerProcess, redis_server, running
from bench._worker_bench import Bench, Sizes, Summary, our_worker
from bench.worker_apps import SUMMARY_KEY

SETTINGS = "bench.task_settings"
#: ``--concurrency`` for the 10 ms scenarios, and ``--task-threads`` for the sync one.
WIDE = 100
#: Threads of a peer's one worker process for the 10 ms scenarios (1 for the no-op ones).
PEER_SLEEP_THREADS = 10


@dataclass(frozen=True)
class TaskSizes:
    """Task counts and trials of one benchmark run."""

    tasks: int = 20_000
    trials: int = 3
    latency_rate: float = 100.0
    latency_s: float = 5.0


QUICK = TaskSizes(tasks=2_000, trials=1, latency_s=1.0)


@dataclass(frozen=True)
class Backend:
    """A task backend and how to start its worker (one process) with ``threads`` threads."""

    name: str
    #: The module whose absence means the backend is not installed.
    module: str
    worker: Callable[[int], list[str]]
    supports_async: bool = True


def _ours(concurrency: int) -> list[str]:
    command = [sys.executable, "-m", "worker", "tasks.default"]
    if concurrency > 1:
        command += ["--concurrency", str(concurrency), "--task-threads", str(concurrency)]
    return command


def _threadmill(threads: int) -> list[str]:
    return [sys.executable, "-m", "django", "threadmill", "worker", "--workers", "1",
            "--threads", str(threads)]  # fmt: skip


def _huey(threads: int) -> list[str]:
    return [sys.executable, "-m", "django", "run_huey", "--workers", str(threads),
            "--worker-type", "thread"]  # fmt: skip


OURS = Backend("ours", "worker", _ours)
THREADMILL = Backend("threadmill", "threadmill", _threadmill)
HUEY = Backend("huey", "huey", _huey, supports_async=False)
BACKENDS = (OURS, THREADMILL, HUEY)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    function: str
    #: How the tasks are enqueued: ``enqueue()`` from sync code, or ``aenqueue()``.
    enqueue: str
    #: Threads for the peers; ours gets ``--concurrency``/``--task-threads`` ``WIDE`` when > 1.
    threads: int
    #: Whether the peers run it too; a scenario of ours alone measures a cost of ours.
    peers: bool = True


SCENARIOS = (
    Scenario("noop-sync", "no-op sync task", "noop_sync", "sync", 1),
    Scenario("noop-async", "no-op async task", "noop_async", "async", 1),
    Scenario("sleep-sync", "time.sleep(0.01) sync task", "sleep_sync", "sync", PEER_SLEEP_THREADS),
    Scenario(
        "sleep-async", "asyncio.sleep(0.01) async task", "sleep_async", "async", PEER_SLEEP_THREADS
    ),
    # What priorities cost: the no-op sync scenario with four priority levels in turn
    # (bench.task_enqueue.PRIORITIES), against the same with priority 0 only.
    Scenario("noop-priority", "no-op sync task, 4 priorities", "noop_sync", "priorities", 1, False),
)
SCENARIO_KEYS = [scenario.key for scenario in SCENARIOS] + ["latency"]


@dataclass(frozen=True)
class Drain:
    """One trial: the tasks' rate, the enqueue rate, CPU per task and peak RSS."""

    rate: float
    enqueue_rate: float
    cpu_us: float
    peak_rss_kb: int


@dataclass
class Results:
    """Per backend name, per scenario key: the trials."""

    drains: dict[str, dict[str, list[Drain]]] = field(default_factory=dict)
    latencies: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    consumer_rates: list[float] = field(default_factory=list)

    def add(self, backend: str, scenario: str, drain: Drain) -> None:
        self.drains.setdefault(backend, {}).setdefault(scenario, []).append(drain)

    def median(self, backend: str, scenario: str, pick: Callable[[Drain], float]) -> float | None:
        trials = self.drains.get(backend, {}).get(scenario)
        return statistics.median(pick(trial) for trial in trials) if trials else None


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def installed(backends: Sequence[Backend]) -> list[Backend]:
    """The backends whose package imports here; one line for each that does not."""
    found = []
    for backend in backends:
        if importlib.util.find_spec(backend.module) is None:
            say(f"{backend.name} is not installed: skipped (uv sync --group bench installs it).")
        else:
            found.append(backend)
    return found


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a supervisor's worker processes)."""
    pids, index = [pid], 0
    while index < len(pids):
        for task in Path(f"/proc/{pids[index]}/task").glob("*"):
            try:
                pids += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
        index += 1
    return pids


def tree_cpu_s(worker: WorkerProcess) -> float:
    """User plus system CPU time of the worker and its child processes, in seconds."""
    total = 0.0
    for pid in _tree(worker.process.pid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def tree_peak_rss_kb(worker: WorkerProcess) -> int:
    """The largest ``VmHWM`` among the worker's processes: the one that runs the tasks."""
    peak = 0
    for pid in _tree(worker.process.pid):
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak


class TaskBench:
    """Runs one backend's trial at a time against the redis-server at ``url``."""

    def __init__(self, url: str, sizes: TaskSizes, logs: Path) -> None:
        self.url = url
        self.sizes = sizes
        self.logs = logs
        self.client = redis.Redis.from_url(url)
        self._runs = 0

    def env(self, backend: Backend, expected: int) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("BENCH_")}
        return env | {
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "BENCH_REDIS_URL": self.url,
            "BENCH_TASK_BACKEND": backend.name,
            "BENCH_EXPECTED": str(expected),
        }

    def enqueue(self, backend: Backend, arguments: list[str]) -> float:
        """Run ``bench.task_enqueue`` with ``arguments``; the seconds it spent enqueuing."""
        command = [sys.executable, "-m", "bench.task_enqueue", *arguments]
        done = subprocess.run(
            command, cwd=ROOT, env=self.env(backend, 0), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise BenchError(
                f"{backend.name} enqueue {' '.join(arguments)} failed:\n{done.stderr[-2000:]}"
            )
        seconds: float = json.loads(done.stdout.splitlines()[-1])["seconds"]
        return seconds

    def worker(
        self,
        backend: Backend,
        command: list[str],
        expected: int,
        extra_env: dict[str, str] | None = None,
    ) -> Any:
        self._runs += 1
        log = self.logs / f"{self._runs:03d}-{backend.name}.log"
        env = self.env(backend, expected) | (extra_env or {})
        return running(backend.name, command, env, log)

    def drain(self, backend: Backend, scenario: Scenario) -> Drain:
        count = self.sizes.tasks
        self.client.flushall()
        enqueue_s = self.enqueue(backend, [scenario.enqueue, scenario.function, str(count)])
        threads = scenario.threads if backend is not OURS else (WIDE if scenario.threads > 1 else 1)
        with self.worker(backend, backend.worker(threads), count) as worker:
            self.wait(worker, 1, poll_s=0.002)
            cpu_s = tree_cpu_s(worker)
            summary = self.wait(worker, count)
            cpu_us = (tree_cpu_s(worker) - cpu_s) / max(1, count - 1) * 1e6
            peak_kb = tree_peak_rss_kb(worker)
        return Drain(summary.rate, count / enqueue_s, cpu_us, peak_kb)

    def latency(self, backend: Backend) -> tuple[float, float]:
        """p50 and p99 (ms) from the call to ``enqueue()`` to the task's start."""
        count = int(self.sizes.latency_rate * self.sizes.latency_s)
        self.client.flushall()
        with self.worker(backend, backend.worker(1), count + 1) as worker:
            # One task first, left out: the worker has imported the task and is waiting.
            self.enqueue(backend, ["sync", "noop_sync", "1"])
            self.wait(worker, 1)
            self.enqueue(
                backend, ["paced", "latency_sync", str(count), str(self.sizes.latency_rate)]
            )
            samples = self.wait(worker, count + 1).latencies_s
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        return cuts[49] * 1000, cuts[98] * 1000

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

    def wait(self, worker: WorkerProcess, expected: int, poll_s: float = 0.02) -> Summary:
        deadline = time.monotonic() + 60.0 + expected / 50
        while True:
            summary = self.summary()
            if summary is not None and summary.count >= expected:
                return summary
            worker.check_alive()
            if time.monotonic() > deadline:
                got = summary.count if summary else 0
                raise BenchError(f"{worker.name} ran {got} of {expected} tasks in time.")
            time.sleep(poll_s)


def profile(bench: TaskBench, function: str, concurrency: int) -> None:
    """Ours with a stopwatch on each step (``bench.task_profile``), one task at a time.

    With ``concurrency`` above 1 the steps of several tasks overlap: a step's time per task
    then adds up the waits of tasks that ran at once.
    """
    count = bench.sizes.tasks
    out = bench.logs / f"profile-{function}.json"
    bench.client.flushall()
    scenario = next(scenario for scenario in SCENARIOS if scenario.function == function)
    bench.enqueue(OURS, [scenario.enqueue, function, str(count)])
    command = [sys.executable, "-m", "bench.task_profile", "tasks.default"]
    command += ["--concurrency", str(concurrency)]
    with bench.worker(OURS, command, count, {"BENCH_PROFILE_OUT": str(out)}) as worker:
        summary = bench.wait(worker, count)
    totals: dict[str, list[float]] = json.loads(out.read_text())
    per_task_us = 1e6 / summary.rate
    print(
        f"\nWhere a task's time goes: ours, {function}, {count:,} tasks, --concurrency "
        f"{concurrency}, "
        f"{summary.rate:,.0f} tasks/s = {per_task_us:,.0f} µs per task (wall)"
    )
    print("| step | calls per task | wall µs per task | share |")
    print("| --- | ---: | ---: | ---: |")
    for step, (calls, seconds) in totals.items():
        us = seconds / count * 1e6
        print(f"| {step} | {calls / count:.2f} | {us:,.0f} | {us / per_task_us:.0%} |")


def run(
    bench: TaskBench, backends: Sequence[Backend], only: list[str] | None, logs: Path
) -> Results:
    """Every scenario's trials, alternating the backends; each trial starts with the next one."""
    results = Results()
    scenarios = [scenario for scenario in SCENARIOS if only is None or scenario.key in only]
    consumer_bench = Bench(bench.url, Sizes(io_ours=bench.sizes.tasks, trials=1), logs)
    for trial in range(bench.sizes.trials):
        order = [backends[(trial + step) % len(backends)] for step in range(len(backends))]
        for scenario in scenarios:
            for backend in order:
                if scenario.enqueue == "async" and not backend.supports_async:
                    continue
                if not scenario.peers and backend is not OURS:
                    continue
                drain = bench.drain(backend, scenario)
                results.add(backend.name, scenario.key, drain)
                say(
                    f"trial {trial + 1} {scenario.key} {backend.name}: {drain.rate:,.0f} tasks/s, "
                    f"{scenario.enqueue} enqueue {drain.enqueue_rate:,.0f}/s, "
                    f"{drain.cpu_us:,.0f} µs CPU/task, {drain.peak_rss_kb / 1024:.1f} MB"
                )
            if scenario.key == "sleep-async":
                runs = [(our_worker(WIDE), bench.sizes.tasks)]
                (rate,) = consumer_bench.throughput(runs, "sleep_consumer")
                results.consumer_rates.append(rate.rate)
                say(f"trial {trial + 1} 10 ms AsyncConsumer, ours: {rate.rate:,.0f} msg/s")
        if only is None or "latency" in only:
            for backend in order:
                p50, p99 = bench.latency(backend)
                results.latencies.setdefault(backend.name, []).append((p50, p99))
                say(f"trial {trial + 1} latency {backend.name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return results


@dataclass(frozen=True)
class Row:
    scenario: str
    cells: dict[str, str]
    ratios: dict[str, str]
    target: str
    missed: bool = False


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours and theirs else ""


def _check(
    value: float | None, limit: float, text: str, *, at_most: bool = False
) -> tuple[str, bool]:
    """The target's text with the measured value, and whether it was missed."""
    if value is None:
        return f"{text} (not measured)", False
    missed = value > limit if at_most else value < limit
    return f"{text}: {'MISSED' if missed else 'met'}", missed


def rate_rows(results: Results, sizes: TaskSizes) -> list[Row]:
    rows: list[Row] = []

    def median(backend: str, scenario: str, pick: Callable[[Drain], float]) -> float | None:
        return results.median(backend, scenario, pick)

    def cells(scenario: str, pick: Callable[[Drain], float], unit: str) -> dict[str, str]:
        shown = {}
        for backend in BACKENDS:
            value = median(backend.name, scenario, pick)
            shown[backend.name] = f"{value:,.0f} {unit}" if value is not None else "-"
        return shown

    def ratios(scenario: str, pick: Callable[[Drain], float]) -> dict[str, str]:
        ours = median("ours", scenario, pick)
        return {peer: _ratio(ours, median(peer, scenario, pick)) for peer in ("threadmill", "huey")}

    def rate(drain: Drain) -> float:
        return drain.rate

    def enqueue_rate(drain: Drain) -> float:
        return drain.enqueue_rate

    threadmill_noop = median("threadmill", "noop-sync", rate)
    for key, kind, wanted in (("noop-sync", "sync", 4.0), ("noop-async", "async", 5.0)):
        ours = median("ours", key, rate)
        ratio = ours / threadmill_noop if ours and threadmill_noop else None
        shown = _ratio(ours, threadmill_noop) or "-"
        target, missed = _check(
            ratio, wanted, f">= {wanted:g}x threadmill's no-op sync rate ({shown})"
        )
        title = f"no-op {kind} task, {sizes.tasks:,} tasks (ours default flags; peers 1 thread)"
        rows.append(Row(title, cells(key, rate, "/s"), ratios(key, rate), target, missed))

    ours_spread = median("ours", "noop-priority", rate)
    ours_noop = median("ours", "noop-sync", rate)
    share = ours_spread / ours_noop if ours_spread and ours_noop else None
    of_noop = f"{share:.0%} of {ours_noop:,.0f} /s" if share and ours_noop else "-"
    target, missed = _check(
        share, 0.9, f">= 90% of ours' no-op sync rate with priority 0 only ({of_noop})"
    )
    rows.append(
        Row(
            f"no-op sync task, {sizes.tasks:,} tasks, priorities -10, 0, 10 and 50 in turn "
            "(ours alone: what priority costs)",
            cells("noop-priority", rate, "/s"),
            {"threadmill": "", "huey": ""},
            target,
            missed,
        )
    )

    ours_sleep = median("ours", "sleep-sync", rate)
    threadmill_sleep = median("threadmill", "sleep-sync", rate)
    target, missed = _check(
        ours_sleep / threadmill_sleep if ours_sleep and threadmill_sleep else None,
        3.0,
        ">= 3x threadmill",
    )
    rows.append(
        Row(
            f"time.sleep(0.01) sync task (ours --concurrency {WIDE} --task-threads {WIDE}; "
            f"peers {PEER_SLEEP_THREADS} threads)",
            cells("sleep-sync", rate, "/s"),
            ratios("sleep-sync", rate),
            target,
            missed,
        )
    )

    ours_async = median("ours", "sleep-async", rate)
    consumer = statistics.median(results.consumer_rates) if results.consumer_rates else None
    share = ours_async / consumer if ours_async and consumer else None
    of_consumer = f"{share:.0%} of {consumer:,.0f} msg/s" if share and consumer else "-"
    target, missed = _check(
        share,
        0.8,
        f">= 80% of ours' 10 ms AsyncConsumer ({of_consumer}) and >= 2,500/s",
    )
    missed = missed or (ours_async is not None and ours_async < 2500)
    rows.append(
        Row(
            f"asyncio.sleep(0.01) async task (ours --concurrency {WIDE}; threadmill "
            f"{PEER_SLEEP_THREADS} threads; huey has no async tasks)",
            cells("sleep-async", rate, "/s"),
            ratios("sleep-async", rate),
            target.replace(": met", ": met" if not missed else ": MISSED"),
            missed,
        )
    )

    for key, title in (
        ("noop-sync", "enqueue() from sync code, no event loop"),
        ("noop-async", "aenqueue()"),
    ):
        ours = median("ours", key, enqueue_rate)
        theirs = median("threadmill", key, enqueue_rate)
        target, missed = _check(
            ours / theirs if ours and theirs else None, 1.5, ">= 1.5x threadmill"
        )
        rows.append(
            Row(
                f"{title}, {sizes.tasks:,} tasks",
                cells(key, enqueue_rate, "/s"),
                ratios(key, enqueue_rate),
                target,
                missed,
            )
        )

    def cpu(drain: Drain) -> float:
        return drain.cpu_us

    def rss(drain: Drain) -> float:
        return drain.peak_rss_kb / 1024

    rows.append(
        Row(
            "worker CPU per no-op sync task (user + system, all its processes and threads)",
            cells("noop-sync", cpu, "µs"),
            ratios("noop-sync", cpu),
            "report",
        )
    )
    rows.append(
        Row(
            "peak RSS (VmHWM) of the worker process, no-op sync",
            cells("noop-sync", rss, "MB"),
            ratios("noop-sync", rss),
            "report",
        )
    )
    return rows


def latency_rows(results: Results, sizes: TaskSizes) -> list[Row]:
    medians = {
        name: tuple(statistics.median(trial[index] for trial in trials) for index in (0, 1))
        for name, trials in results.latencies.items()
    }
    rows = []
    title = (
        f"latency {{}}, enqueue() to task start, {sizes.latency_rate:g} tasks/s for "
        f"{sizes.latency_s:g} s (all 1 thread; ours default flags)"
    )
    for index, quantile in enumerate(("p50", "p99")):
        ours = medians.get("ours", (None, None))[index]
        shown = {
            backend.name: f"{medians[backend.name][index]:.2f} ms"
            if backend.name in medians
            else "-"
            for backend in BACKENDS
        }
        ratios = {
            peer: _ratio(ours, medians[peer][index]) if peer in medians else ""
            for peer in ("threadmill", "huey")
        }
        if quantile == "p50":
            huey = medians.get("huey", (None, None))[0]
            target, missed = _check(
                ours / huey if ours and huey else None, 1.0, "<= huey's", at_most=True
            )
        else:
            target, missed = _check(ours, 10.0, "<= 10 ms", at_most=True)
        rows.append(Row(title.format(quantile), shown, ratios, target, missed))
    return rows


def print_table(rows: list[Row]) -> None:
    print("| scenario | ours | threadmill | huey | ours / threadmill | ours / huey | target |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        if all(cell == "-" for cell in row.cells.values()):
            # Not run (--only): nothing to show.
            continue
        print(
            f"| {row.scenario} | {row.cells['ours']} | {row.cells['threadmill']} | "
            f"{row.cells['huey']} | {row.ratios['threadmill']} | {row.ratios['huey']} | "
            f"{row.target} |"
        )


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 tasks, one trial: a smoke run")
    parser.add_argument("--tasks", type=int, help="tasks per trial of each scenario (20,000)")
    parser.add_argument("--trials", type=int, help="trials per backend and scenario (3)")
    parser.add_argument(
        "--only",
        choices=SCENARIO_KEYS,
        action="append",
        help="run this scenario only; repeat it for several",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only time each step of ours' no-op sync and async tasks (one at a time)",
    )
    parser.add_argument(
        "--profile-concurrency",
        type=int,
        default=1,
        help="--concurrency of the worker under --profile (1)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    sizes = QUICK if options.quick else TaskSizes()
    if options.tasks is not None:
        if options.tasks < 2:
            raise SystemExit(f"--tasks {options.tasks}: expected 2 or more.")
        sizes = replace(sizes, tasks=options.tasks)
    if options.trials is not None:
        if options.trials < 1:
            raise SystemExit(f"--trials {options.trials}: expected 1 or more.")
        sizes = replace(sizes, trials=options.trials)
    backends = installed(BACKENDS)
    versions = ", ".join(
        f"{name} {_version(name)}" for name in ("django", "threadmill", "huey", "hiredis")
    )
    say(
        f"Python {sys.version.split()[0]}, {versions}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}; {sizes}"
    )
    logs = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    started = time.monotonic()
    if options.profile:
        with redis_server() as url:
            bench = TaskBench(url, sizes, logs)
            profile(bench, "noop_sync", options.profile_concurrency)
            profile(bench, "noop_async", options.profile_concurrency)
        return 0
    with redis_server() as url:
        results = run(TaskBench(url, sizes, logs), backends, options.only, logs)
    rows = []
    if options.only is None or set(options.only) - {"latency"}:
        rows += rate_rows(results, sizes)
    if options.only is None or "latency" in options.only:
        rows += latency_rows(results, sizes)
    print_table(rows)
    command = " ".join(["python bench/bench_tasks.py", *(argv or sys.argv[1:])])
    print(
        f"\nMedians of {sizes.trials} alternating trial(s). Reproduce: {command} (took "
        f"{time.monotonic() - started:.0f} s; load average at the end "
        f"{os.getloadavg()[0]:.2f}; worker logs in {logs})"
    )
    missed = [row.scenario for row in rows if row.missed]
    if missed:
        say(f"Targets missed: {'; '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
