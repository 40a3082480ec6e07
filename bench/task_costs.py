"""What each piece of a task's path costs in CPU, one piece at a time, in one process.

``bench_tasks.py`` measures whole backends against each other; this says what a task is made of,
so a goal can be checked against its parts: the worker's CPU per task bounds how many no-op tasks
one process runs a second. It starts its own redis-server and runs, on one event loop (uvloop
when installed, as ``runworker`` does):

- the thread hop a sync task makes (``run_in_executor`` and asgiref's ``sync_to_async``), ten at
  a time as ``--concurrency 10`` makes them;
- the outcome write (``store_result.lua`` through a ``ScriptBatch``), alone and ten at a time;
- Django's logging receivers of ``task_started`` and ``task_finished`` at ``INFO`` (the worker's
  log format, written to ``/dev/null``), and the record conversions of a ``TaskResult``;
- ``enqueue()`` from sync code beside a redis-py ``PING`` and a ``PING`` on a bare socket;
- the worker itself (``drain_sync()``, in this process) on no-op sync and async tasks.

Run: ``.venv/bin/python bench/task_costs.py [--count N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._processes import redis_server  # noqa: E402

#: The task record ``enqueue()`` stores for a no-op task, as the worker reads it.
RECORD: dict[str, Any] = {
    "id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "task": "bench.task_functions.noop_sync",
    "queue_name": "default",
    "priority": 0,
    "run_after": None,
    "backend": "default",
    "status": "READY",
    "args": [],
    "kwargs": {},
    "errors": [],
    "worker_ids": [],
    "return_value": None,
    "enqueued_at": "2026-12-06T10:00:00.000000+00:00",
    "started_at": None,
    "finished_at": None,
    "last_attempted_at": None,
}


def _line(piece: str, cpu_s: float, count: int, wall_s: float) -> None:
    print(f"| {piece:<72} | {cpu_s / count * 1e6:8.1f} | {wall_s / count * 1e6:9.1f} |")


def _measure(piece: str, count: int, call: Callable[[], object]) -> None:
    for _ in range(min(count, 500)):
        call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        call()
    _line(piece, time.process_time() - cpu, count, time.perf_counter() - wall)


async def _ameasure(
    piece: str, count: int, at_once: int, call: Callable[[], Awaitable[object]]
) -> None:
    async def calls(times: int) -> None:
        for _ in range(times):
            await call()

    await calls(min(count, 500))
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(calls(count // at_once) for _ in range(at_once)))
    _line(piece, time.process_time() - cpu, count, time.perf_counter() - wall)


async def _loop_pieces(url: str, count: int) -> None:
    from asgiref.sync import sync_to_async
    from redis.asyncio import Redis

    from worker.transport.batch import ScriptBatch
    from worker.transport.scripts import STORE_RESULT

    pool = ThreadPoolExecutor(10)
    loop = asyncio.get_running_loop()

    def nothing() -> None:
        return None

    hop = sync_to_async(nothing, thread_sensitive=False, executor=pool)
    for at_once in (1, 10):
        await _ameasure(
            f"thread hop, `run_in_executor`, {at_once} at a time",
            count,
            at_once,
            lambda: loop.run_in_executor(pool, nothing),
        )
        await _ameasure(f"thread hop, `sync_to_async`, {at_once} at a time", count, at_once, hop)
    pool.shutdown()

    client = Redis.from_url(url)
    batch = ScriptBatch([client])
    record = json.dumps(RECORD)
    written = iter(range(10 * count))

    def store() -> Coroutine[Any, Any, Any]:
        result_id = f"r{next(written)}"
        keys = [f"bench:result:{result_id}", "bench:recent", f"bench:progress:{result_id}"]
        return batch.run(0, STORE_RESULT, keys, [record, 60, result_id, time.time(), 1000, 1])

    for at_once in (1, 10):
        await _ameasure(
            f"outcome write (`store_result.lua`, `ScriptBatch`), {at_once} at a time",
            count,
            at_once,
            store,
        )
    await batch.aclose()
    await client.flushdb()
    await client.aclose()


def _django_pieces(url: str, count: int) -> None:
    import redis
    from django.tasks.signals import task_finished, task_started

    from bench.task_functions import noop_sync
    from worker.ops.logs import WorkerLogHandler, configure_logging
    from worker.tasks.backend import ChannelLayerBackend
    from worker.tasks.results import from_record, to_record

    result = from_record(RECORD)
    _measure(
        "`from_record()`: a stored record to a `TaskResult`", count, lambda: from_record(RECORD)
    )
    _measure(
        "`to_record()` and `json.dumps()`: a `TaskResult` to its record",
        count,
        lambda: json.dumps(to_record(result)),
    )
    configure_logging("INFO")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, WorkerLogHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115  # lives as long as the run

    def signals() -> None:
        task_started.send(ChannelLayerBackend, task_result=result)
        task_finished.send(ChannelLayerBackend, task_result=result)

    _measure("`task_started` + `task_finished`, Django's receivers logging at INFO", count, signals)
    logging.getLogger().setLevel(logging.WARNING)

    client = redis.Redis.from_url(url)
    _measure("redis-py `PING` (a round trip from sync code)", count, client.ping)
    where = client.connection_pool.connection_kwargs
    with socket.create_connection((where["host"], where["port"])) as bare:
        bare.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def ping() -> None:
            bare.sendall(b"*1\r\n$4\r\nPING\r\n")
            bare.recv(64)

        _measure("`PING` on a bare socket", count, ping)
    _measure("`enqueue()` of a no-op task, from sync code", count, noop_sync.enqueue)
    client.flushdb()
    client.close()


def _worker_pieces(count: int) -> None:
    import redis

    from bench.task_functions import noop_async, noop_sync
    from worker.testing.drain import drain_sync

    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    for task, kind in ((noop_async, "async"), (noop_sync, "sync")):
        for _ in range(count):
            task.enqueue()
        cpu, wall = time.process_time(), time.perf_counter()
        stats = drain_sync(["tasks.default"])
        if stats.completed != count:
            raise RuntimeError(f"the worker completed {stats.completed} of {count} tasks")
        _line(
            f"the worker, a no-op {kind} task (`drain_sync()`, asyncio's loop)",
            time.process_time() - cpu,
            count,
            time.perf_counter() - wall,
        )
        client.flushdb()
    client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="calls per piece")
    options = parser.parse_args(argv)
    count: int = options.count
    with redis_server() as url:
        os.environ["BENCH_REDIS_URL"] = url
        os.environ["BENCH_TASK_BACKEND"] = "ours"
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.task_settings"
        import django

        django.setup()
        print(f"Python {sys.version.split()[0]}, {count:,} calls per piece, medians not taken:")
        print("one run, so compare pieces of the same run.\n")
        print(f"| {'piece':<72} | {'CPU µs':>8} | {'wall µs':>9} |")
        print(f"| {'-' * 72} | {'-' * 7}: | {'-' * 8}: |")
        _run_loop(_loop_pieces(url, count))
        _django_pieces(url, count)
        _worker_pieces(min(count, 5_000))
    return 0


def _run_loop(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
        return
    uvloop.run(coroutine)


if __name__ == "__main__":
    raise SystemExit(main())
