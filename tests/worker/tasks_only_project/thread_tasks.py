"""Sync tasks that show how many of them run at once in a worker process."""

from __future__ import annotations

import os
import threading

# django.tasks on Django 6, the django-tasks backport on Django 5.2.
from worker.tasks.compat import task

#: The worker's environment says how many tasks must meet at the barrier.
BARRIER_PARTIES_ENV = "CW_TEST_BARRIER_PARTIES"
_barrier = threading.Barrier(int(os.environ.get(BARRIER_PARTIES_ENV, "1")))


@task()
def meet(timeout_s: float) -> int:
    """Wait until every party has arrived; fails (``BrokenBarrierError``) after ``timeout_s``."""
    return _barrier.wait(timeout_s)
