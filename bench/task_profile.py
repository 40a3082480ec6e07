"""``runworker`` with a stopwatch on each step of a task, for ``bench_tasks.py --profile``.

``python -m bench.task_profile tasks.default ...`` runs the worker as ``runworker`` does, with
each step below wrapped to add its wall time and its number of calls up; at exit the totals go
to the JSON file ``BENCH_PROFILE_OUT`` names. With ``--concurrency 1`` the steps of one task do
not overlap with another's, so a step's total over the task count is its share of a task.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

#: Step name -> [calls, seconds].
TOTALS: dict[str, list[float]] = {}


def _add(step: str, started: float) -> None:
    entry = TOTALS.setdefault(step, [0, 0.0])
    entry[0] += 1
    entry[1] += time.perf_counter() - started


def timed(step: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (sync or async) that adds each call's wall time to ``TOTALS[step]``."""
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                _add(step, started)

        return timed_async

    @functools.wraps(function)
    def timed_sync(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _add(step, started)

    return timed_sync


def _wrap(owner: Any, name: str, step: str) -> None:
    setattr(owner, name, timed(step, getattr(owner, name)))


def install() -> None:
    """Wrap the steps; the names say what each total covers."""
    import asgiref.sync

    from worker.consume import settle
    from worker.tasks import consumer, results
    from worker.transport import pop_connection

    steps = [
        (pop_connection.PopConnection, "pop", "pop script (per batch)"),
        (consumer.TaskRun, "run", "task, whole (start to outcome stored)"),
        (results.ResultStore, "aload", "result load, awaited from the worker loop"),
        (results.ResultStore, "load", "result load, on the send loop (Redis round trip)"),
        (consumer, "from_record", "record to TaskResult (task import, datetimes)"),
        (results.ResultStore, "asave", "result write, awaited from the worker loop"),
        (results.ResultStore, "save", "result write, on the send loop (pipeline)"),
        (asgiref.sync.SyncToAsync, "__call__", "sync_to_async, awaited (thread hop + task)"),
        (consumer.TaskRun, "_run_sync", "in the thread: the function (task_started if needed)"),
        (consumer, "close_old_connections", "close_old_connections (twice)"),
        (results.ResultStore, "load_sync", "result load from the thread (sync pool)"),
        (results.ResultStore, "save_sync", "result write from a thread (sync pipeline)"),
        (results.ResultStore, "swap_sync", "first result write, reading what it replaces"),
        (results.ResultStore, "save_with", "result write on the worker's own connections"),
        (results.ResultStore, "load_with", "retry's result load on the worker's connections"),
        (consumer.TaskRun, "_in_thread", "hop to the channel's pool for Redis work, awaited"),
        (settle.Settlement, "completed", "settlement.completed (queues the ack)"),
        (settle.Settlement, "flush_acks", "ack flush (per batch)"),
    ]
    for owner, name, step in steps:
        _wrap(owner, name, step)
    for signal_name in ("task_started", "task_finished"):
        signal = getattr(consumer, signal_name)
        signal.send = timed(f"{signal_name}.send", signal.send)
        signal.asend = timed(f"{signal_name}.asend", signal.asend)


def _dump() -> None:
    path = os.environ.get("BENCH_PROFILE_OUT")
    if path:
        with open(path, "w") as out:
            json.dump(TOTALS, out)


def main() -> int:
    import django

    from worker.cli.runworker import main as runworker

    django.setup()
    install()
    atexit.register(_dump)
    sys.argv[0] = "runworker"
    code: int = runworker()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
