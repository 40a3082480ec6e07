"""The Tasks API from ``django.tasks`` (Django 6) or the ``django-tasks`` backport (Django 5.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.tasks import (
        DEFAULT_TASK_QUEUE_NAME,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import (
        log_task_finished,
        log_task_started,
        task_enqueued,
        task_finished,
        task_started,
    )
    from django.utils.json import normalize_json
else:
    try:
        from django.tasks import (
            DEFAULT_TASK_QUEUE_NAME,
            Task,
            TaskContext,
            TaskResult,
            TaskResultStatus,
            task,
            task_backends,
        )
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import TaskError
        from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
        from django.tasks.signals import (
            log_task_finished,
            log_task_started,
            task_enqueued,
            task_finished,
            task_started,
        )
        from django.utils.json import normalize_json
    except ImportError:
        try:
            import django_tasks  # noqa: F401
        except ImportError as error:
            raise ImportError(
                "worker.tasks needs django.tasks (Django 6) or the django-tasks backport "
                "(pip install django-tasks) on Django 5.2."
            ) from error
        from django_tasks import DEFAULT_TASK_QUEUE_NAME, task, task_backends
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import (
            log_task_finished,
            log_task_started,
            task_enqueued,
            task_finished,
            task_started,
        )
        from django_tasks.utils import normalize_json

#: The logger of Django's own receivers of the task signals (a line per state change).
TASKS_LOGGER = (
    "django.tasks" if log_task_started.__module__.startswith("django.") else "django_tasks"
)

__all__ = [
    "DEFAULT_TASK_QUEUE_NAME",
    "TASKS_LOGGER",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "log_task_finished",
    "log_task_started",
    "normalize_json",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
