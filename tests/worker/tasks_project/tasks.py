"""The project's tasks: sync and async, succeeding, failing, retried, reporting progress."""

from __future__ import annotations

import asyncio
from typing import Any

# django.tasks on Django 6, the django-tasks backport on Django 5.2.
from worker.tasks.compat import TaskContext, task
from worker.tasks.progress import Progress


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task()
def fail(reason: str) -> None:
    raise ValueError(f"boom: {reason}")


@task(takes_context=True)
def flaky(context: TaskContext[..., Any], fail_attempts: int) -> dict[str, Any]:
    """Fails the first ``fail_attempts`` attempts; returns what the context said."""
    if context.attempt <= fail_attempts:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return {"attempt": context.attempt, "id": context.task_result.id}


@task(takes_context=True)
def resize(context: TaskContext[..., Any], sizes: list[int]) -> int:
    progress = Progress.for_task(context.task_result.id)
    for done, size in enumerate(sizes, start=1):
        progress.report(done, len(sizes), detail=f"{size} px")
    return len(sizes)


@task(takes_context=True)
async def async_resize(context: TaskContext[..., Any], sizes: list[int]) -> int:
    progress = Progress.for_task(context.task_result.id)
    for done, size in enumerate(sizes, start=1):
        await progress.areport(done, len(sizes), detail=f"{size} px")
    return len(sizes)


@task()
def slow(seconds: float) -> None:
    import time

    time.sleep(seconds)


not_a_task = add.func
