"""The tasks-only project's task."""

from __future__ import annotations

# django.tasks on Django 6, the django-tasks backport on Django 5.2.
from worker.tasks.compat import task


@task()
def multiply(a: int, b: int) -> int:
    return a * b
