"""Tasks that cannot start: a stored path that no longer imports or names no task, arguments
that do not decode.

A result outlives the code that enqueued it, so its task is rebuilt from the stored path even
when that fails: ``UnrunnableTask`` stands in, ``get_result()`` still returns the result, and
the worker stores it ``FAILED`` with the reason instead of running it.
"""

from __future__ import annotations

import dataclasses
import traceback
from typing import TYPE_CHECKING, Any, NoReturn

from worker.tasks.compat import InvalidTask, Task, TaskError, normalize_json

if TYPE_CHECKING:
    from collections.abc import Callable

    _Task = Task[..., Any]
else:
    # Generic in the stubs only.
    _Task = Task


# Task is a frozen dataclass, so a subclass must be one too.
@dataclasses.dataclass(frozen=True, kw_only=True)
class UnrunnableTask(_Task):
    """Stands in for the task at ``path``, which cannot be loaded: ``reason`` says why, and
    ``error`` is the failure as the worker stores it.

    ``module_path`` is the stored path; calling the function raises ``InvalidTask``.
    """

    path: str
    reason: str
    error: TaskError = dataclasses.field(compare=False, repr=False)

    def __post_init__(self) -> None:
        # Nothing to validate: the backend cannot judge a function that is not there.
        pass

    @property
    def module_path(self) -> str:
        return self.path


def unrunnable_task(path: object, error: InvalidTask, **options: Any) -> UnrunnableTask:
    """An ``UnrunnableTask`` for ``path``, with the task options the result was stored with."""
    name = str(path)
    reason = str(error)
    return UnrunnableTask(
        func=_missing(name, reason), path=name, reason=reason, error=task_error(error), **options
    )


def _missing(path: str, problem: str) -> Callable[..., NoReturn]:
    def missing(*args: Any, **kwargs: Any) -> NoReturn:
        raise InvalidTask(problem)

    module, _, name = path.rpartition(".")
    missing.__module__ = module
    missing.__name__ = missing.__qualname__ = name
    return missing


def task_error(error: BaseException) -> TaskError:
    """``error`` as ``django.tasks`` stores it: its class's path and its traceback."""
    kind = type(error)
    return TaskError(
        exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
        traceback="".join(traceback.format_exception(error)),
    )


def argument_problem(args: object, kwargs: object) -> Exception | None:
    """Why a task's stored ``args`` and ``kwargs`` cannot be passed to it, or None when they can.

    They must be a JSON list and a JSON object: a record from another version or a hand-made
    message may hold anything.
    """
    try:
        if not isinstance(args, list):
            raise TypeError(f"Task args is a {type(args).__name__}, expected a list: {args!r:.200}")
        if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
            raise TypeError(
                f"Task kwargs is {type(kwargs).__name__} {kwargs!r:.200}, expected an object "
                "with string keys"
            )
        normalize_json(args)
        normalize_json(kwargs)
    except (TypeError, ValueError) as error:
        return error
    return None
