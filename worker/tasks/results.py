"""Task results in Redis: a ``TaskResult`` as a JSON record with a TTL, on a host chosen by id.

Reads and writes run on the send loop (``worker.sending.pools``), so the web process, the worker and
sync or async callers all share its pooled connections.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import redis
from django.utils.module_loading import import_string

from worker.names import task_channel
from worker.sending.pools import send_loop, sync_sender
from worker.tasks.compat import InvalidTask, Task, TaskError, TaskResult, TaskResultStatus
from worker.transport.keys import task_result_key

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis as AsyncRedis

#: Results live this long after their last change, unless ``OPTIONS["RESULT_TTL_S"]`` says.
DEFAULT_RESULT_TTL_S = 24 * 3600.0

_TIMES = ("enqueued_at", "started_at", "finished_at", "last_attempted_at")


def to_record(result: TaskResult[..., Any]) -> dict[str, Any]:
    """Everything ``from_record`` needs to rebuild ``result`` in another process."""
    task = result.task
    record: dict[str, Any] = {
        "id": result.id,
        "task": task.module_path,
        "queue_name": task.queue_name,
        "priority": task.priority,
        "run_after": _time(task.run_after),
        "backend": result.backend,
        "status": str(result.status),
        "args": result.args,
        "kwargs": result.kwargs,
        "errors": [
            {"exception_class_path": e.exception_class_path, "traceback": e.traceback}
            for e in result.errors
        ],
        "worker_ids": list(result.worker_ids),
        "return_value": raw_return_value(result),
    }
    for name in _TIMES:
        record[name] = _time(getattr(result, name))
    return record


def load_task(path: str) -> Task[..., Any]:
    """The ``@task`` object at ``path``, imported as the worker runs it."""
    try:
        task = import_string(path)
    except ImportError as error:
        raise InvalidTask(f"Cannot import task {path!r}: {error}") from error
    if not isinstance(task, Task):
        raise InvalidTask(
            f"{path!r} is a {type(task).__name__}, not a task; decorate the function with "
            "@task (from django.tasks, or django_tasks on Django 5.2)."
        )
    return task


def from_record(record: dict[str, Any]) -> TaskResult[..., Any]:
    """A ``TaskResult`` from ``to_record``'s output (or a task message with the same keys)."""
    task = load_task(record["task"])
    options = {
        "queue_name": record["queue_name"],
        "priority": record["priority"],
        "run_after": _datetime(record.get("run_after")),
        "backend": record["backend"],
    }
    if any(getattr(task, name) != value for name, value in options.items()):
        task = dataclasses.replace(task, **options)
    result = TaskResult(
        task=task,
        id=record["id"],
        status=TaskResultStatus(record.get("status", TaskResultStatus.READY)),
        enqueued_at=_datetime(record.get("enqueued_at")),
        started_at=_datetime(record.get("started_at")),
        finished_at=_datetime(record.get("finished_at")),
        last_attempted_at=_datetime(record.get("last_attempted_at")),
        args=record["args"],
        kwargs=record["kwargs"],
        backend=record["backend"],
        errors=[TaskError(**error) for error in record.get("errors", [])],
        worker_ids=list(record.get("worker_ids", [])),
    )
    set_return_value(result, record.get("return_value"))
    return result


def raw_return_value(result: TaskResult[..., Any]) -> Any:
    """The stored return value, whatever the status (``return_value`` raises unless done)."""
    return result._return_value  # type: ignore[attr-defined]  # private in the stubs


def set_return_value(result: TaskResult[..., Any], value: Any) -> None:
    """Set the return value of a frozen ``TaskResult``, as Django's own backends do."""
    object.__setattr__(result, "_return_value", value)


class ResultStore:
    """Task results of one backend on its channel layer's hosts, each kept ``ttl_s``.

    The plain methods run on the send loop (``a``-prefixed ones hand themselves to it); the
    ``_sync`` ones use the sync pools from the calling thread.
    """

    def __init__(self, layer: RedisChannelLayer, ttl_s: float) -> None:
        self.layer = layer
        self.ttl_s = ttl_s

    def _host(self, result_id: str) -> int:
        return int(self.layer.consistent_hash(result_id))

    def _key(self, result_id: str) -> str:
        return task_result_key(self.layer.prefix, result_id)

    def _record(self, result: TaskResult[..., Any], keep_until: float | None) -> tuple[str, int]:
        """The JSON record and its TTL: ``ttl_s``, or ``ttl_s`` past a later ``keep_until``."""
        ttl_s = self.ttl_s + max(0.0, (keep_until or 0.0) - time.time())
        return json.dumps(to_record(result)), math.ceil(ttl_s)

    def _client(self, result_id: str) -> AsyncRedis:
        return send_loop().sender(self.layer).client(self._host(result_id))

    def _sync_client(self, result_id: str) -> redis.Redis:
        return sync_sender(self.layer).clients[self._host(result_id)]

    async def save(self, result: TaskResult[..., Any], keep_until: float | None = None) -> None:
        """Store ``result``; a Redis at its ``maxmemory`` raises ``RedisOutOfMemory``."""
        record, ttl_s = self._record(result, keep_until)
        index = self._host(result.id)
        sender = send_loop().sender(self.layer)
        try:
            await sender.client(index).set(self._key(result.id), record, ex=ttl_s)
        except redis.OutOfMemoryError as error:
            channel = task_channel(result.task.queue_name)
            raise await sender.memory_refusal(index, channel, error) from error

    async def load(self, result_id: str) -> dict[str, Any] | None:
        return _decoded(await self._client(result_id).get(self._key(result_id)))

    async def delete(self, result_id: str) -> None:
        await self._client(result_id).delete(self._key(result_id))

    async def asave(self, result: TaskResult[..., Any], keep_until: float | None = None) -> None:
        await send_loop().acall(self.save(result, keep_until))

    async def aload(self, result_id: str) -> dict[str, Any] | None:
        return await send_loop().acall(self.load(result_id))

    async def adelete(self, result_id: str) -> None:
        await send_loop().acall(self.delete(result_id))

    def save_sync(self, result: TaskResult[..., Any], keep_until: float | None = None) -> None:
        """``save()`` from sync code."""
        record, ttl_s = self._record(result, keep_until)
        index = self._host(result.id)
        sender = sync_sender(self.layer)
        try:
            sender.clients[index].set(self._key(result.id), record, ex=ttl_s)
        except redis.OutOfMemoryError as error:
            channel = task_channel(result.task.queue_name)
            raise sender.memory_refusal(index, channel, error) from error

    def load_sync(self, result_id: str) -> dict[str, Any] | None:
        return _decoded(self._sync_client(result_id).get(self._key(result_id)))

    def delete_sync(self, result_id: str) -> None:
        self._sync_client(result_id).delete(self._key(result_id))


def _decoded(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    record: dict[str, Any] = json.loads(raw)
    return record


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _datetime(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
