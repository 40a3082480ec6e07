"""The built-in consumer of task channels: run the task, send its signals, store its result.

Sync task functions run in a thread of their own with Django's ``close_old_connections()``
around the call, as Channels' ``database_sync_to_async`` does; async ones run on the worker's
loop. Results are read and stored from the loop, through the connections the worker lends
(``worker.consume.connections``). ``RUNNING`` is stored only for a task still running after
``RUNNING_AFTER_S`` (``tasks/running.py``). A task that raises is stored ``READY`` with its
error while the worker will retry it, ``FAILED`` on the last attempt; the exception then goes on
to the worker, which retries or dead-letters the message as it does for any consumer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
import traceback
from collections.abc import Callable, Sequence
from inspect import iscoroutinefunction
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.dispatch import Signal
from django.utils import timezone

from worker.consume.connections import worker_connections
from worker.consume.delivery import ATTEMPT_KEY, RETRY_DELAY_KEY
from worker.errors import TaskFailed, TaskNotRunnable
from worker.names import process_id
from worker.tasks.backend import TASK_MESSAGE_TYPE, ChannelLayerBackend
from worker.tasks.compat import (
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    log_task_finished,
    log_task_started,
    normalize_json,
    task_backends,
    task_finished,
    task_started,
)
from worker.tasks.results import (
    Attempts,
    changed,
    from_record,
    set_return_value,
)
from worker.tasks.running import RunningMark, Write
from worker.tasks.unrunnable import UnrunnableTask, argument_problem, task_error

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from routing.types import Message, Receive, Scope, Send
    from worker.tasks.results import ResultStore


# What a task message must carry; ChannelLayerBackend.enqueue() sends these and a few more.
_REQUIRED = ("task_id", "task", "backend", "queue_name", "priority", "args", "kwargs")


T = TypeVar("T")

#: Why a task cannot run: the error to store and the reason for the dead letter.
_Problem = tuple[TaskError, str]

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


@dataclasses.dataclass(frozen=True, slots=True)
class _Ran:
    """What a sync task function gave: its return value, or what it raised."""

    value: Any = None
    error: BaseException | None = None


class TaskConsumer:
    """ASGI application for one task channel instance: runs each ``task.run`` message."""

    def __init__(self, max_attempts: int = 1, executor: ThreadPoolExecutor | None = None) -> None:
        self.max_attempts = max_attempts
        #: Where sync task functions run; None: the event loop's default executor.
        self.executor = executor

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
            await TaskRun(message, self.max_attempts, self.executor).run()


class TaskRun:
    """One attempt at one task."""

    def __init__(
        self, message: Message, max_attempts: int, executor: ThreadPoolExecutor | None = None
    ) -> None:
        self.message = message
        self.executor = executor
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
        #: The worker's own connections to the result's hosts, when it lends them.
        self.lent = worker_connections(self.store.layer)
        self.worker_id = process_id()
        self.result: TaskResult[..., Any]
        #: Writes RUNNING once the function has run for RUNNING_AFTER_S; made by run().
        self.mark: RunningMark
        #: A first attempt starts from its message, which carries the record enqueue() stored,
        #: instead of reading it back; its first write checks what it replaces (see _save_sync).
        self.unchecked = self.attempt == 1
        #: The record of an earlier run of this attempt, found by that check: a run given back
        #: at shutdown, whose start time, worker ids and errors the result keeps.
        self.earlier: dict[str, Any] | None = None

    async def run(self) -> None:
        record = None
        if not self.unchecked:
            record = await self._load()
        loaded, problem = self._checked(record or _from_message(self.message))
        if problem is not None:
            await self._not_runnable(loaded, *problem)
        self.result = self._started(loaded)
        self.mark = RunningMark()
        self.mark.arm()
        if _is_coroutine_function(self.result.task.func):
            self.mark.start(self._running_write())
            await self._run_async()
            return
        try:
            ran = await self._run_in_thread()
        finally:
            # Whatever happened before the function (a receiver of task_started that raised),
            # the mark stops looking.
            await self.mark.aclose()
        await self._conclude(ran)

    async def _run_in_thread(self) -> _Ran:
        """One hop for a sync task: its thread runs the function, and ``task_started`` unless
        the signal can be sent from here; the worker's loop stores the outcome."""
        way = _way(task_started, type(self.backend))
        if way.how == _INLINE:
            self._send_inline(task_started, way)
        run = sync_to_async(self._run_sync, thread_sensitive=False, executor=self.executor)
        return await run(way.how != _INLINE)

    async def _load(self) -> dict[str, Any] | None:
        """The stored record of a retried task, through the worker's connections if lent."""
        result_id = self.message["task_id"]
        if self.lent is None:
            return await self._in_thread(self.store.load_sync, result_id)
        return await self.store.load_with(self.lent.clients, result_id)

    async def _in_thread(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Redis work through the sync pools, in the channel's thread pool: for a consumer run
        outside a worker, which lends no connections.

        A hop to a pool thread costs a fraction of one to the send loop's thread and back, and
        the channel's pool has a thread for each instance.
        """
        call = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def _running_write(self) -> Write:
        """How the mark stores RUNNING: on the worker's loop through its connections when it
        lends them, else through the sync pools in a thread."""
        started = self.result

        def keep(stored: TaskResult[..., Any]) -> None:
            if stored is not started:
                # The outcome is built from self.result once this write is done (the mark's
                # close() waits for it), so it keeps the earlier run's history too.
                self.result = stored

        async def awrite() -> None:
            keep(await self._save(started))

        def write() -> None:
            keep(self._save_sync(started))

        return awrite if self.lent is not None else write

    def _save_sync(self, result: TaskResult[..., Any]) -> TaskResult[..., Any]:
        """Store ``result``, with an earlier run's history if this finds one; returns it.

        The first write of an attempt that started from its message reads the record it
        replaces in the same round trip: worker ids there mean a run of this attempt was given
        back at shutdown, and the record is written again with that run's history.
        """
        attempts = self._attempts()
        if not self.unchecked:
            self.store.save_sync(result, attempts=attempts)
            return result
        self.unchecked = False
        replaced = self.store.swap_sync(result, attempts=attempts)
        stored = self._after_swap(result, replaced)
        if stored is not result:
            self.store.save_sync(stored, attempts=attempts)
        return stored

    async def _save(self, result: TaskResult[..., Any]) -> TaskResult[..., Any]:
        """``_save_sync()`` from the worker's loop: through the connections the worker lends
        (``worker.consume.connections``), else in a thread of the channel's pool."""
        if self.lent is None:
            return await self._in_thread(self._save_sync, result)
        scripts = self.lent.scripts
        attempts = self._attempts()
        if not self.unchecked:
            await self.store.save_with(scripts, result, attempts)
            return result
        self.unchecked = False
        replaced = await self.store.save_with(scripts, result, attempts, replaced=True)
        stored = self._after_swap(result, replaced)
        if stored is not result:
            await self.store.save_with(scripts, stored, attempts)
        return stored

    def _after_swap(
        self, result: TaskResult[..., Any], replaced: dict[str, Any] | None
    ) -> TaskResult[..., Any]:
        """``result``, with the history of the record its first write replaced when that
        record shows a run given back at shutdown (worker ids)."""
        if not (replaced and replaced.get("worker_ids")):
            return result
        self.earlier = replaced
        return self._with_earlier(result)

    def _with_earlier(self, result: TaskResult[..., Any]) -> TaskResult[..., Any]:
        """``result`` with the start time, worker ids and errors of an earlier run, if any."""
        earlier = self.earlier
        if earlier is None:
            return result
        before = from_record(earlier)
        return self._replace(
            result,
            started_at=before.started_at or result.started_at,
            worker_ids=[*before.worker_ids, *result.worker_ids],
            errors=[*before.errors, *result.errors],
        )

    def _checked(self, record: dict[str, Any]) -> tuple[TaskResult[..., Any], _Problem | None]:
        """The stored result, and why the task cannot run (an error and a reason) if it cannot."""
        bad_arguments = argument_problem(record.get("args"), record.get("kwargs"))
        if bad_arguments is not None:
            # Stored without them; the dead letter keeps the message as it was sent.
            record = record | {"args": [], "kwargs": {}}
        loaded = from_record(record)
        if isinstance(loaded.task, UnrunnableTask):
            return loaded, (loaded.task.error, loaded.task.reason)
        if bad_arguments is not None:
            return loaded, (
                task_error(bad_arguments),
                f"its arguments do not decode: {bad_arguments}",
            )
        return loaded, None

    def _run_sync(self, send_started: bool) -> _Ran:
        close_old_connections()
        try:
            if send_started:
                task_started.send(type(self.backend), task_result=self.result)
            # The function's own time counts toward RUNNING, not a wait for a free thread.
            self.mark.start(self._running_write())
            try:
                return _Ran(
                    normalize_json(self.result.task.func(*self._arguments(), **self._kwargs()))
                )
            except BaseException as error:
                return _Ran(error=error)
            finally:
                # Closed before the outcome is built: a RUNNING write still going may add an
                # earlier run's history to self.result, which the outcome starts from.
                self.mark.close()
        finally:
            close_old_connections()

    async def _conclude(self, ran: _Ran) -> None:
        """Store a sync function's outcome and send ``task_finished``; a failure then goes on
        to the worker."""
        error = ran.error
        if error is None:
            self.result = self._succeeded(ran.value)
            await self._store_and_signal()
            return
        self.result = self._failed(error)
        try:
            # Raised again for the signal: Django's receiver logs the traceback it finds in
            # sys.exc_info(), as it does when the signal is sent from the failing call.
            raise error
        except BaseException:
            await self._store_and_signal()
        _reraise(error)

    async def _run_async(self) -> None:
        try:
            await self._signal(task_started)
        except BaseException:
            await self.mark.aclose()
            raise
        try:
            value = normalize_json(
                await self.result.task.func(*self._arguments(), **self._kwargs())
            )
        except asyncio.CancelledError:
            # A timeout or a shutdown: either way the worker runs it again, or gives up on it.
            await self.mark.aclose()
            await self.store.asave(
                self._replace(status=TaskResultStatus.READY),
                attempts=self._attempts(),
            )
            raise
        except BaseException as error:
            await self.mark.aclose()
            self.result = self._failed(error)
            await self._store_and_signal()
            _reraise(error)
        await self.mark.aclose()
        self.result = self._succeeded(value)
        await self._store_and_signal()

    async def _store_and_signal(self) -> None:
        """Store the outcome, then send ``task_finished`` if the task is done.

        Both in one hop to a thread of the channel's pool when a receiver of the signal needs a
        thread: Django's ``asend()`` would hop again, to asgiref's one shared thread.
        """
        sender = type(self.backend)
        finished = self.result.is_finished
        way = _way(task_finished, sender) if finished else _NOBODY
        if way.how == _THREAD and self.lent is None:
            self.result = await self._in_thread(self._store_and_send_finished)
            return
        self.result = await self._save(self.result)
        if finished:
            await self._send(task_finished, sender, way)

    def _store_and_send_finished(self) -> TaskResult[..., Any]:
        stored = self._save_sync(self.result)
        if stored.is_finished:
            task_finished.send(type(self.backend), task_result=stored)
        return stored

    async def _signal(self, signal: Signal) -> None:
        """Send ``signal`` from the worker's loop, each receiver once (see ``_way()``)."""
        sender = type(self.backend)
        await self._send(signal, sender, _way(signal, sender))

    async def _send(self, signal: Signal, sender: type, way: _Way) -> None:
        if way.how == _INLINE:
            self._send_inline(signal, way)
        elif way.how == _ASYNC:
            await signal.asend(sender, task_result=self.result)
        else:
            await self._in_thread(signal.send, sender, task_result=self.result)

    def _send_inline(self, signal: Signal, way: _Way) -> None:
        """``signal.send()`` to the receivers ``_way()`` found, as ``send()`` calls them."""
        sender = type(self.backend)
        for receiver in way.receivers:
            receiver(signal=signal, sender=sender, task_result=self.result)

    async def _not_runnable(
        self, result: TaskResult[..., Any], error: TaskError, reason: str
    ) -> NoReturn:
        """Store ``FAILED`` at once with why, and hand the worker an error it does not retry."""
        if self.unchecked:
            # Rare enough to read what a run given back at shutdown may have left.
            self.unchecked = False
            stored = await self._in_thread(self.store.load_sync, result.id)
            if stored and stored.get("worker_ids"):
                self.earlier = stored
                result = self._with_earlier(result)
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
        return changed(result if result is not None else self.result, **changes)


def _from_message(message: Message) -> dict[str, Any]:
    """A record built from the task's message, for a result that has expired."""
    return {key: value for key, value in message.items() if key != "type"} | {
        "id": message["task_id"]
    }


#: How the worker's loop sends a task signal: in place, with ``asend()``, or in a thread.
_INLINE, _ASYNC, _THREAD = "inline", "async", "thread"


@dataclasses.dataclass(frozen=True, slots=True)
class _Way:
    """How to send a signal, and its live sync receivers when that is in place."""

    how: str
    receivers: Sequence[Callable[..., Any]] = ()


#: A signal sent to no receiver.
_NOBODY = _Way(_INLINE)
#: Django's own receivers of the task signals: they only log, so they run on the loop.
_LOGGING_RECEIVERS = frozenset({log_task_started, log_task_finished})


def _way(signal: Signal, sender: type) -> _Way:
    """How to send ``signal`` for ``sender`` from the worker's loop.

    ``asend()`` when a receiver is a coroutine function. Otherwise ``send()``: in place when
    every receiver is one of Django's logging ones, else in a thread of the channel's pool,
    where each runs once as ``asend()`` would run it in asgiref's one shared thread (a
    project's receiver may block or touch the database).
    """
    sync_receivers, async_receivers = signal._live_receivers(sender)
    if async_receivers:
        return _Way(_ASYNC)
    if all(receiver in _LOGGING_RECEIVERS for receiver in sync_receivers):
        return _Way(_INLINE, sync_receivers)
    return _Way(_THREAD)


#: Whether a task's function is a coroutine function, asked once per function: the functions are
#: the project's own, a bounded set.
_is_coroutine_function = functools.cache(iscoroutinefunction)


def _reraise(error: BaseException) -> NoReturn:
    """Hand the failure to the worker: the task's own exception, or ``TaskFailed`` for the rest.

    ``SystemExit`` and friends must not end the worker's instance task as they would a process.
    """
    if isinstance(error, Exception):
        raise error
    raise TaskFailed(f"task raised {type(error).__name__}: {error}") from error
