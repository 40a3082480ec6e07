"""A ``django.tasks`` backend that runs tasks on ``runworker`` through the channel layer.

::

    TASKS = {
        "default": {
            "BACKEND": "worker.tasks.backend.ChannelLayerBackend",
            "QUEUES": ["default", "emails"],  # runworker tasks.default tasks.emails
            "OPTIONS": {"LAYER": "default", "RESULT_TTL_S": 86400},
        }
    }

``enqueue()`` stores a ``READY`` result, then sends ``{"type": "task.run", ...}`` to the channel
``tasks.<queue_name>``; the worker runs the function and stores the outcome, which
``get_result()`` and ``result.refresh()`` read back. Works with ``django.tasks`` (Django 6) and
with the ``django-tasks`` backport (Django 5.2).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import redis
from asgiref.sync import sync_to_async
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from worker.errors import ConfigurationError
from worker.names import NAME_RULE, TASK_MESSAGE_TYPE, is_plain_channel_name, task_channel
from worker.sending.api import Prepared, prepare, redis_send, redis_send_sync
from worker.sending.pools import send_loop
from worker.tasks.compat import (
    BaseTaskBackend,
    InvalidTask,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
)
from worker.tasks.results import DEFAULT_RESULT_TTL_S, ResultStore, from_record, to_record
from worker.transport.layer import check_layer

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer

    from worker.tasks.compat import Task

__all__ = ["TASK_MESSAGE_TYPE", "ChannelLayerBackend", "task_channel"]

P = ParamSpec("P")
R = TypeVar("R")

_OPTIONS = {"LAYER", "RESULT_TTL_S"}
# The longest queue name whose task channel is shorter than Channels' 100 characters.
MAX_QUEUE_NAME_CHARS = 99 - len(task_channel(""))


class ChannelLayerBackend(BaseTaskBackend):
    """Tasks travel as channel messages to ``runworker tasks.<queue_name>``; results in Redis.

    Async tasks, ``run_after`` (parked in the channel's delayed set until due) and ``priority``
    are supported: among tasks waiting on a queue, a higher priority starts first, and equal
    priorities keep their enqueue order. Retries and dead letters are the worker's: set
    ``max_attempts`` for task channels in ``CHANNEL_WORKER["CHANNELS"]``.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        unknown = sorted(set(self.options) - _OPTIONS)
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown key(s) {', '.join(map(repr, unknown))};"
                f" known keys: {', '.join(map(repr, sorted(_OPTIONS)))}."
            )
        self.layer_alias: str = self.options.get("LAYER", "default")
        ttl_s = self.options.get("RESULT_TTL_S", DEFAULT_RESULT_TTL_S)
        if not isinstance(ttl_s, int | float) or isinstance(ttl_s, bool) or ttl_s <= 0:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['RESULT_TTL_S'] is {ttl_s!r}; expected a number of "
                "seconds > 0."
            )
        self.result_ttl_s = float(ttl_s)
        for queue_name in sorted(self.queues):
            problem = queue_name_problem(queue_name)
            if problem:
                raise ImproperlyConfigured(f"TASKS[{alias!r}]['QUEUES']: {problem}")
        self._store: ResultStore | None = None

    @property
    def store(self) -> ResultStore:
        """The result store on the backend's layer, checked on first use.

        Follows the layer the alias names now: when ``CHANNEL_LAYERS`` changes (a test's
        settings, the pytest plugin's own prefix), results stay beside the task messages.
        """
        layer = self._layer()
        if self._store is None or self._store.layer is not layer:
            self._store = ResultStore(layer, self.result_ttl_s)
        return self._store

    def _layer(self) -> RedisChannelLayer:
        from channels.layers import get_channel_layer

        return check_layer(get_channel_layer(self.layer_alias), self.layer_alias)

    def validate_task(self, task: Task[..., Any]) -> None:
        super().validate_task(task)
        problem = queue_name_problem(task.queue_name)
        if problem:
            raise InvalidTask(problem)

    def enqueue(
        self, task: Task[P, R], args: Iterable[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        self.validate_task(task)
        store = self.store
        result, prepared = self._prepare(task, args, kwargs)
        due_at = _due_at(result)
        # The result ahead of the message, in its round trip when both are on one host, so
        # get_result() works as soon as a worker could run the task; a send that fails leaves
        # no result behind.
        try:
            redis_send_sync(prepared, due_at, along=store.along(result, keep_until=due_at))
        except BaseException:
            # Best effort: the send's own error is the one to raise.
            with contextlib.suppress(redis.RedisError):
                store.delete_sync(result.id)
            raise
        task_enqueued.send(type(self), task_result=result)
        return result

    async def aenqueue(
        self, task: Task[P, R], args: Iterable[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        _, async_receivers = task_enqueued._live_receivers(type(self))
        if not async_receivers:
            # Django's own aenqueue(): task_enqueued's sync receivers need a hop to asgiref's
            # thread anyway, and the writes go along in the same hop, through the sync pools.
            return await sync_to_async(self.enqueue)(task, args, kwargs)
        self.validate_task(task)
        store = self.store
        result, prepared = self._prepare(task, args, kwargs)
        due_at = _due_at(result)
        # One hop to the send loop for both writes, and one round trip when on one host.
        await send_loop().acall(_store_and_send(store, result, prepared, due_at))
        await task_enqueued.asend(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        return self._result(self.store.load_sync(result_id), result_id)

    async def aget_result(self, result_id: str) -> TaskResult[..., Any]:
        return self._result(await self.store.aload(result_id), result_id)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        try:
            self._layer()
        except ConfigurationError as error:
            return [
                checks.Error(
                    f"TASKS[{self.alias!r}] cannot use channel layer {self.layer_alias!r}: {error}",
                    id="channel_worker.E001",
                )
            ]
        return []

    def _prepare(
        self, task: Task[P, R], args: Iterable[Any], kwargs: dict[str, Any]
    ) -> tuple[TaskResult[P, R], Prepared]:
        result = TaskResult(
            task=task,
            # 122 random bits, as get_random_string(32) gives, at a tenth of its cost.
            id=uuid.uuid4().hex,
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        record = to_record(result)
        message = {
            "type": TASK_MESSAGE_TYPE,
            "task_id": result.id,
            **{key: record[key] for key in ("task", "queue_name", "priority", "run_after")},
            **{key: record[key] for key in ("backend", "args", "kwargs", "enqueued_at")},
        }
        channel = task_channel(task.queue_name)
        prepared = prepare(
            channel, message, self.layer_alias, check_known=False, priority=int(task.priority)
        )
        return result, prepared

    def _result(self, record: dict[str, Any] | None, result_id: str) -> TaskResult[..., Any]:
        if record is None:
            raise TaskResultDoesNotExist(
                f"No result {result_id!r} on backend {self.alias!r}: unknown id, or older than "
                f"RESULT_TTL_S={self.result_ttl_s:g} s."
            )
        return from_record(record)


async def _store_and_send(
    store: ResultStore, result: TaskResult[..., Any], prepared: Prepared, due_at: float | None
) -> None:
    """``enqueue()``'s two writes on the send loop: the result, then the message."""
    try:
        await redis_send(prepared, due_at, along=store.along(result, keep_until=due_at))
    except BaseException:
        with contextlib.suppress(redis.RedisError):
            await store.delete(result.id)
        raise


def _due_at(result: TaskResult[..., Any]) -> float | None:
    run_after = result.task.run_after
    return run_after.timestamp() if run_after is not None else None


def queue_name_problem(queue_name: object) -> str | None:
    """Why ``queue_name`` cannot name a task channel, or None when it can."""
    channel = task_channel(str(queue_name))
    if isinstance(queue_name, str) and is_plain_channel_name(channel):
        return None
    return (
        f"Queue name {queue_name!r} cannot name the task channel {channel!r}: the channel "
        f"takes {NAME_RULE}, so a queue name takes at most {MAX_QUEUE_NAME_CHARS} of them, "
        "e.g. 'default' or 'emails'."
    )
