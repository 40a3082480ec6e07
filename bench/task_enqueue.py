"""The enqueuing side of ``bench_tasks.py``: a process of its own, like a web process.

``python -m bench.task_enqueue sync|async|paced|priorities FUNCTION COUNT [RATE]`` enqueues
``COUNT`` tasks with the backend ``bench.task_settings`` picks and prints the seconds it took as
JSON: ``sync``
calls ``enqueue()`` from plain sync code (no event loop), ``async`` awaits ``aenqueue()``,
``paced`` calls ``enqueue(time.time())`` at a steady ``RATE`` per second, ``priorities`` calls
``enqueue()`` from sync code with the priorities ``PRIORITIES`` in turn.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


def _sync(task: Any, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        task.enqueue()
    return time.perf_counter() - started


async def _async(task: Any, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await task.aenqueue()
    return time.perf_counter() - started


#: The priorities the ``priorities`` mode gives its tasks in turn: four levels, one of them 0.
PRIORITIES = (-10, 0, 10, 50)


def _priorities(task: Any, count: int) -> float:
    tasks = [task.using(priority=priority) for priority in PRIORITIES]
    started = time.perf_counter()
    for n in range(count):
        tasks[n % len(tasks)].enqueue()
    return time.perf_counter() - started


def _paced(task: Any, count: int, rate: float) -> float:
    """Each deadline is fixed from the start, so a slow call does not shift the ones after it."""
    interval_s = 1 / rate
    started = time.perf_counter()
    for n in range(count):
        delay_s = started + n * interval_s - time.perf_counter()
        if delay_s > 0:
            time.sleep(delay_s)
        task.enqueue(time.time())
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    import django

    django.setup()
    from bench import task_functions

    mode, name, count = argv[0], argv[1], int(argv[2])
    task = getattr(task_functions, name)
    if mode == "sync":
        seconds = _sync(task, count)
    elif mode == "async":
        seconds = asyncio.run(_async(task, count))
    elif mode == "paced":
        seconds = _paced(task, count, float(argv[3]))
    elif mode == "priorities":
        seconds = _priorities(task, count)
    else:
        raise SystemExit(f"mode {mode!r}: expected 'sync', 'async', 'paced' or 'priorities'.")
    print(json.dumps({"seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
