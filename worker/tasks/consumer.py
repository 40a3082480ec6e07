"""The built-in consumer of task channels: run the task, send its signals, store its result.

Sync task functions run in a thread of their own with Django's ``close_old_connections()``
around the call, as Channels' ``database_sync_to_async`` does; async ones run on the worker's
loop. A task that raises is stored ``READY`` with its error while the worker will retry it,
``FAILED`` on the last attempt; the exception then goes on to the worker, which retries or
dead-letters the message as it does for any consumer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import traceback
from inspect import iscoroutinefunction
from typing import TYPE_CHECKING, Any, NoReturn

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.utils import timezone

from worker.consume.delivery import ATTEMPT_KEY, RETRY_DELAY_KEY
from worker.errors import TaskFailed, TaskNotRunnable
from worker.names import process_id
from worker.tasks.backend import TASK_MESSAGE_TYPE, ChannelLayerBackend
from worker.tasks.compat import (
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_backends,
    task_finished,
    task_started,
)
from worker.tasks.results import Attempts, from_record, raw_return_value, set_return_value
from worker.tasks.unrunnable import UnrunnableTask, argument_problem, task_error

if TYPE_CHECKING:
    from routing.types import Message, Receive, Scope, Send
    from worker.tasks.results import ResultStore


# What a task message must carry; ChannelLayerBackend.enqueue() sends these and a few more.
_REQUIRED = ("task_id", "task", "backend", "queue_name", "priority", "args", "kwargs")


if TYPE_CHECKING:
    _Context = TaskContext[..., Any]
else:
    # Generic in the stubs only.
    _Context = TaskContext


# The stubs declare TaskContext unfrozen; at runtime it is frozen, and so must a subclass be.
@dataclasses.dataclass(frozen=True, kw_only=True)
class ChannelTaskContext(_Context):  # type: ignore[misc]
    """``TaskContext`` whose ``attempt`` is the worker's delivery attempt (1, 2, ...)."""

    delivery_attempt: int = 1

    @property
    def attempt(self) -> int:
        return self.delivery_attempt


class TaskConsumer:
    """ASGI application for one task channel instance: runs each ``task.run`` message."""

    def __init__(self, max_attempts: int = 1) -> None:
        self.max_attempts = max_attempts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message.get("type") != TASK_MESSAGE_TYPE:
                raise ValueError(
                    f"Task channel {scope.get('channel')!r} got a {message.get('type')!r} "
                    f"message; task channels carry {TASK_MESSAGE_TYPE!r} messages sent by "
                    "ChannelLayerBackend.enqueue(), not other sends."
                )
            missing = [key for key in _REQUIRED if key not in message]
            if missing:
                raise ValueError(
                    f"Task message on channel {scope.get('channel')!r} lacks "
                    f"{', '.join(map(repr, missing))}; task messages are sent by "
                    "ChannelLayerBackend.enqueue()."
                )
            await TaskRun(message, self.max_attempts).run()


class TaskRun:
    """One attempt at one task."""

    def __init__(self, message: Message, max_attempts: int) -> None:
        self.message = message
        self.attempt = int(message.get(ATTEMPT_KEY, 1))
        self.final = self.attempt >= max_attempts
        self.max_attempts = max_attempts
        #: When the worker runs the task again, once this attempt failed (epoch seconds).
        self.next_attempt_at: float | None = None
        alias = message["backend"]
        backend = task_backends[alias]
        if not isinstance(backend, ChannelLayerBackend):
            raise TypeError(
                f"Task {message.get('task')!r} was sent by TASKS[{alias!r}], which is now "
                f"{type(backend).__name__}, not ChannelLayerBackend; the worker cannot store "
                "its result."
            )
        self.backend = backend
        self.store: ResultStore = backend.store
        self.worker_id = process_id()
        self.result: TaskResult[..., Any]

    async def run(self) -> None:
        record = await _load(self.store, self.message)
        bad_arguments = argument_problem(record.get("args"), record.get("kwargs"))
        if bad_arguments is not None:
            # Stored without them; the dead letter keeps the message as it was sent.
            record = record | {"args": [], "kwargs": {}}
        loaded = from_record(record)
        if isinstance(loaded.task, UnrunnableTask):
            await self._not_runnable(loaded, loaded.task.error, loaded.task.reason)
        if bad_arguments is not None:
            reason = f"its arguments do not decode: {bad_arguments}"
            await self._not_runnable(loaded, task_error(bad_arguments), reason)
        self.result = self._started(loaded)
        await self.store.asave(self.result, attempts=self._attempts())
        if iscoroutinefunction(self.result.task.func):
            await self._run_async()
        else:
            await sync_to_async(self._run_sync, thread_sensitive=False)()

    def _run_sync(self) -> None:
        close_old_connections()
        try:
            task_started.send(type(self.backend), task_result=self.result)
            try:
                value = normalize_json(self.result.task.func(*self._arguments(), **self._kwargs()))
            except BaseException as error:
                self.result = self._failed(error)
                self.store.save_sync(self.result, attempts=self._attempts())
                if self.result.is_finished:
                    task_finished.send(type(self.backend), task_result=self.result)
                _reraise(error)
            self.result = self._succeeded(value)
            self.store.save_sync(self.result, attempts=self._attempts())
            task_finished.send(type(self.backend), task_result=self.result)
        finally:
            close_old_connections()

    async def _run_async(self) -> None:
        await task_started.asend(type(self.backend), task_result=self.result)
        try:
            value = normalize_json(
                await self.result.task.func(*self._arguments(), **self._kwargs())
            )
        except asyncio.CancelledError:
            # A timeout or a shutdown: either way the worker runs it again, or gives up on it.
            await self.store.asave(
                self._replace(status=TaskResultStatus.READY), attempts=self._attempts()
            )
            raise
        except BaseException as error:
            self.result = self._failed(error)
            await self.store.asave(self.result, attempts=self._attempts())
            if self.result.is_finished:
                await task_finished.asend(type(self.backend), task_result=self.result)
            _reraise(error)
        self.result = self._succeeded(value)
        await self.store.asave(self.result, attempts=self._attempts())
        await task_finished.asend(type(self.backend), task_result=self.result)

    async def _not_runnable(
        self, result: TaskResult[..., Any], error: TaskError, reason: str
    ) -> NoReturn:
        """Store ``FAILED`` at once with why, and hand the worker an error it does not retry."""
        now = timezone.now()
        self.result = self._replace(
            result,
            status=TaskResultStatus.FAILED,
            last_attempted_at=now,
            finished_at=now,
            worker_ids=[*result.worker_ids, self.worker_id],
            errors=[*result.errors, error],
        )
        await self.store.asave(self.result, attempts=self._attempts())
        await task_finished.asend(type(self.backend), task_result=self.result)
        raise TaskNotRunnable(f"Task {result.task.module_path!r} cannot run: {reason}")

    def _arguments(self) -> list[Any]:
        args = list(self.result.args)
        if self.result.task.takes_context:
            args.insert(
                0, ChannelTaskContext(task_result=self.result, delivery_attempt=self.attempt)
            )
        return args

    def _kwargs(self) -> dict[str, Any]:
        return dict(self.result.kwargs)

    def _started(self, result: TaskResult[..., Any]) -> TaskResult[..., Any]:
        now = timezone.now()
        return self._replace(
            result,
            status=TaskResultStatus.RUNNING,
            started_at=result.started_at or now,
            last_attempted_at=now,
            finished_at=None,
            worker_ids=[*result.worker_ids, self.worker_id],
        )

    def _succeeded(self, value: Any) -> TaskResult[..., Any]:
        result = self._replace(status=TaskResultStatus.SUCCESSFUL, finished_at=timezone.now())
        set_return_value(result, value)
        return result

    def _failed(self, error: BaseException) -> TaskResult[..., Any]:
        kind = type(error)
        errors = [
            *self.result.errors,
            TaskError(
                exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                traceback="".join(traceback.format_exception(error)),
            ),
        ]
        if self.final:
            return self._replace(
                status=TaskResultStatus.FAILED, finished_at=timezone.now(), errors=errors
            )
        delay_s = self.message.get(RETRY_DELAY_KEY)
        if isinstance(delay_s, int | float):
            self.next_attempt_at = time.time() + delay_s
        return self._replace(status=TaskResultStatus.READY, errors=errors)

    def _attempts(self) -> Attempts:
        return Attempts(self.attempt, self.max_attempts, self.next_attempt_at)

    def _replace(
        self, result: TaskResult[..., Any] | None = None, **changes: Any
    ) -> TaskResult[..., Any]:
        base = result if result is not None else self.result
        new = dataclasses.replace(base, **changes)
        set_return_value(new, raw_return_value(base))
        return new


async def _load(store: ResultStore, message: Message) -> dict[str, Any]:
    """The stored record of the task, or one built from the message when it has expired."""
    record = await store.aload(message["task_id"])
    if record is not None:
        return record
    return {key: value for key, value in message.items() if key != "type"} | {
        "id": message["task_id"]
    }


def _reraise(error: BaseException) -> NoReturn:
    """Hand the failure to the worker: the task's own exception, or ``TaskFailed`` for the rest.

    ``SystemExit`` and friends must not end the worker's instance task as they would a process.
    """
    if isinstance(error, Exception):
        raise error
    raise TaskFailed(f"task raised {type(error).__name__}: {error}") from error
