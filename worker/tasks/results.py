"""Task results in Redis: a ``TaskResult`` as a JSON record with a TTL, on a host chosen by id.

Outside a worker (``enqueue()``, ``get_result()``, the admin, the CLI), reads and writes use the
send API's pooled connections (``worker.sending.pools``): the sync pools from sync code, the send
loop from async code. Inside a worker, the task consumer reads and writes through the worker's own
connections on its loop (``save_with``, ``load_with``). A write is one ``store_result.lua``
call, but for ``enqueue()``'s, which the task's send script makes (``along``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis
from django.utils.module_loading import import_string

from worker.constants import RECENT_TASK_RESULTS_PER_HOST
from worker.names import task_channel
from worker.sending.pools import (
    Along,
    memory_info,
    out_of_memory_reply,
    send_loop,
    sync_sender,
)
from worker.tasks.compat import InvalidTask, Task, TaskError, TaskResult, TaskResultStatus
from worker.tasks.unrunnable import unrunnable_task
from worker.transport.batch import ScriptBatch
from worker.transport.keys import (
    task_progress_key,
    task_recent_key,
    task_rerun_key,
    task_result_key,
)
from worker.transport.scripts import STORE_RESULT, run, run_sync

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis as AsyncRedis

#: Results live this long after their last change, unless ``OPTIONS["RESULT_TTL_S"]`` says.
DEFAULT_RESULT_TTL_S = 24 * 3600.0

#: Each layer host lists this many of its most recently changed results for ``tasks list``.
RECENT_RESULTS_PER_HOST = RECENT_TASK_RESULTS_PER_HOST
#: The status ``tasks show`` and ``tasks list`` give a ``READY`` result waiting for a retry.
RETRYING = "RETRYING"

_TIMES = ("enqueued_at", "started_at", "finished_at", "last_attempted_at")


@dataclasses.dataclass(frozen=True, slots=True)
class Attempts:
    """What the stored record adds to Django's result: which attempt, of how many, and when next.

    ``django.tasks`` has no retrying status: a task the worker will retry stays ``READY`` for
    Django's API, and these fields let ``tasks show`` call it retrying.
    """

    attempt: int
    max_attempts: int
    #: When the worker runs the task again (epoch seconds); None unless it failed and will.
    next_attempt_at: float | None = None

    def fields(self) -> dict[str, Any]:
        next_at = self.next_attempt_at
        return {
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "next_attempt_at": _time(datetime.fromtimestamp(next_at, UTC)) if next_at else None,
        }


def shown_status(record: dict[str, Any]) -> str:
    """A stored record's status as the CLI shows it: ``RETRYING`` for a retry to come."""
    status = str(record.get("status", TaskResultStatus.READY))
    if status == TaskResultStatus.READY and record.get("next_attempt_at"):
        return RETRYING
    return status


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
    if not isinstance(path, str):
        raise InvalidTask(f"Task path {path!r} is not a string; expected e.g. 'myapp.tasks.add'.")
    try:
        task = import_string(path)
    except Exception as error:
        # Whatever the module raises while importing (a SyntaxError too), the task cannot run.
        raise InvalidTask(f"Cannot import task {path!r}: {error}") from error
    if not isinstance(task, Task):
        raise InvalidTask(
            f"{path!r} is a {type(task).__name__}, not a task; decorate the function with "
            "@task (from django.tasks, or django_tasks on Django 5.2)."
        )
    return task


def from_record(record: dict[str, Any]) -> TaskResult[..., Any]:
    """A ``TaskResult`` from ``to_record``'s output (or a task message with the same keys)."""
    result = TaskResult(
        task=_task(record),
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


def _task(record: dict[str, Any]) -> Task[..., Any]:
    """The record's task with its stored options; ``UnrunnableTask`` when it cannot be loaded.

    A stored result outlives its function (renamed, removed, not deployed on this host), so it
    must still load: the stand-in names the path and says why it cannot run.
    """
    options = {
        "queue_name": record["queue_name"],
        "priority": record["priority"],
        "run_after": _datetime(record.get("run_after")),
        "backend": record["backend"],
    }
    try:
        task = load_task(record["task"])
        if any(getattr(task, name) != value for name, value in options.items()):
            # Validated again: a queue no longer declared is refused here too.
            task = dataclasses.replace(task, **options)
    except InvalidTask as error:
        return unrunnable_task(record["task"], error, **options)
    return task


def changed(result: TaskResult[..., Any], **changes: Any) -> TaskResult[..., Any]:
    """A copy of ``result`` with ``changes`` (not ``args`` or ``kwargs``) and its return value.

    ``dataclasses.replace()`` would build it anew, and ``TaskResult.__post_init__()`` normalize
    its arguments again; they were normalized when ``result`` was built, so the copy takes them
    as they are, at a quarter of the cost, for the three or four copies each task makes.
    """
    if type(result) is not TaskResult:
        # A subclass may have fields of its own, or checks in __post_init__.
        new = dataclasses.replace(result, **changes)
        set_return_value(new, raw_return_value(result))
        return new
    unknown = changes.keys() - _CHANGEABLE
    if unknown:
        raise TypeError(
            f"changed() cannot set {', '.join(sorted(unknown))}; it sets "
            f"{', '.join(sorted(_CHANGEABLE))}."
        )
    new = object.__new__(TaskResult)
    for name in _RESULT_FIELDS:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(result, name))
    return new


#: Every field of ``TaskResult``, ``_return_value`` among them.
_RESULT_FIELDS = tuple(field.name for field in dataclasses.fields(TaskResult))
#: What ``changed()`` sets: the arguments would need normalizing, the return value has its setter.
_CHANGEABLE = frozenset(_RESULT_FIELDS) - {"args", "kwargs", "_return_value"}


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

    def _record(
        self,
        result: TaskResult[..., Any],
        keep_until: float | None,
        attempts: Attempts | None = None,
    ) -> tuple[str, int]:
        """The JSON record and its TTL: ``ttl_s``, or ``ttl_s`` past a later ``keep_until``."""
        ttl_s = self.ttl_s + max(0.0, (keep_until or 0.0) - time.time())
        record = to_record(result) | (attempts.fields() if attempts is not None else {})
        return json.dumps(record), math.ceil(ttl_s)

    def along(self, result: TaskResult[..., Any], keep_until: float | None = None) -> Along:
        """A new result's record, stored by the task's send script in the same command."""
        record, ttl_s = self._record(result, keep_until)
        keys, args = self._stored(result.id, record, ttl_s)
        return Along(self._host(result.id), keys, args[:-1], STORE_RESULT)

    def _forget(self, pipe: Any, result_id: str) -> None:
        pipe.delete(self._key(result_id), task_progress_key(self.layer.prefix, result_id))
        pipe.zrem(task_recent_key(self.layer.prefix), result_id)

    def _client(self, result_id: str) -> AsyncRedis:
        return send_loop().sender(self.layer).client(self._host(result_id))

    def _sync_client(self, result_id: str) -> redis.Redis:
        return sync_sender(self.layer).clients[self._host(result_id)]

    def _stored(
        self, result_id: str, record: str, ttl_s: int, replaced: bool = False
    ) -> tuple[list[Any], list[Any]]:
        """``STORE_RESULT``'s keys and arguments: the record, its place in the host's index of
        recent results (trimmed to ``RECENT_RESULTS_PER_HOST``) and its progress's lifetime."""
        prefix = self.layer.prefix
        keys = [self._key(result_id), task_recent_key(prefix), task_progress_key(prefix, result_id)]
        args = [record, ttl_s, result_id, time.time(), RECENT_RESULTS_PER_HOST, int(replaced)]
        return keys, args

    async def save(
        self,
        result: TaskResult[..., Any],
        keep_until: float | None = None,
        attempts: Attempts | None = None,
    ) -> None:
        """Store ``result``; a Redis at its ``maxmemory`` raises ``RedisOutOfMemory``."""
        await self._store(result, self._record(result, keep_until, attempts))

    async def save_with(
        self,
        scripts: ScriptBatch,
        result: TaskResult[..., Any],
        attempts: Attempts | None = None,
        replaced: bool = False,
    ) -> dict[str, Any] | None:
        """``save()`` through ``scripts`` (the worker's clients, one per layer host, on the
        running loop), in one round trip with the other writes of this turn of the loop, or
        with those made while the previous round trip to its host is under way.

        With ``replaced``, returns the record the write replaced (None when there was none).
        """
        return await self._store(result, self._record(result, None, attempts), replaced, scripts)

    async def _store(
        self,
        result: TaskResult[..., Any],
        stored: tuple[str, int],
        replaced: bool = False,
        scripts: ScriptBatch | None = None,
    ) -> dict[str, Any] | None:
        """Run ``STORE_RESULT`` on the host of ``result``: in ``scripts``' batch when given,
        else on the send loop; a refusal for maxmemory becomes ``RedisOutOfMemory``."""
        index = self._host(result.id)
        client = scripts.clients[index] if scripts is not None else self._client(result.id)
        keys, args = self._stored(result.id, *stored, replaced)
        try:
            if scripts is not None:
                return _decoded(await scripts.run(index, STORE_RESULT, keys, args))
            return _decoded(await run(client, STORE_RESULT, keys, args))
        except redis.ResponseError as error:
            if not out_of_memory_reply(error):
                raise
            channel = task_channel(result.task.queue_name)
            memory = await memory_info(client)
            refusal = sync_sender(self.layer).out_of_memory(index, channel, error, memory)
            raise refusal from error

    async def load_with(
        self, clients: Sequence[AsyncRedis], result_id: str
    ) -> dict[str, Any] | None:
        """``load()`` through ``clients`` (one per layer host, on the running loop)."""
        return _decoded(await clients[self._host(result_id)].get(self._key(result_id)))

    async def load(self, result_id: str) -> dict[str, Any] | None:
        return _decoded(await self._client(result_id).get(self._key(result_id)))

    async def delete(self, result_id: str) -> None:
        async with self._client(result_id).pipeline(transaction=False) as pipe:
            self._forget(pipe, result_id)
            await pipe.execute()

    async def recent(
        self, limit: int, status: str | None = None, queue: str | None = None
    ) -> list[dict[str, Any]]:
        """The records of up to ``limit`` most recently changed results, newest first.

        Only the ``RECENT_RESULTS_PER_HOST`` newest of each host are looked at; ``status`` (as
        ``shown_status()`` gives it) and ``queue`` keep those that match.
        """
        listed: list[tuple[float, dict[str, Any]]] = []
        for index in range(len(self.layer.hosts)):
            listed += await self._recent_on(index)
        listed.sort(key=lambda entry: entry[0], reverse=True)
        found = [
            record
            for _, record in listed
            if (queue is None or record.get("queue_name") == queue)
            and (status is None or shown_status(record) == status)
        ]
        return found[:limit]

    async def _recent_on(self, index: int) -> list[tuple[float, dict[str, Any]]]:
        """(time of the change, record) of one host's listed results that have not expired."""
        client = send_loop().sender(self.layer).client(index)
        entries: Any = await client.zrevrange(
            task_recent_key(self.layer.prefix), 0, RECENT_RESULTS_PER_HOST - 1, withscores=True
        )
        if not entries:
            return []
        values: Any = await client.mget([self._key(_text(member)) for member, _ in entries])
        return [
            (float(score), record)
            for (_, score), value in zip(entries, values, strict=True)
            if (record := _decoded(value)) is not None
        ]

    async def asave(
        self,
        result: TaskResult[..., Any],
        keep_until: float | None = None,
        attempts: Attempts | None = None,
    ) -> None:
        await send_loop().acall(self.save(result, keep_until, attempts))

    async def aload(self, result_id: str) -> dict[str, Any] | None:
        return await send_loop().acall(self.load(result_id))

    async def adelete(self, result_id: str) -> None:
        await send_loop().acall(self.delete(result_id))

    async def arecent(
        self, limit: int, status: str | None = None, queue: str | None = None
    ) -> list[dict[str, Any]]:
        return await send_loop().acall(self.recent(limit, status, queue))

    def save_sync(
        self,
        result: TaskResult[..., Any],
        keep_until: float | None = None,
        attempts: Attempts | None = None,
    ) -> None:
        """``save()`` from sync code."""
        self._store_sync(result, self._record(result, keep_until, attempts))

    def load_sync(self, result_id: str) -> dict[str, Any] | None:
        return _decoded(self._sync_client(result_id).get(self._key(result_id)))

    def swap_sync(
        self, result: TaskResult[..., Any], attempts: Attempts | None = None
    ) -> dict[str, Any] | None:
        """``save_sync()`` that also returns the record it replaced, in the same round trip."""
        return _decoded(self._store_sync(result, self._record(result, None, attempts), True))

    def _store_sync(
        self, result: TaskResult[..., Any], stored: tuple[str, int], replaced: bool = False
    ) -> Any:
        index = self._host(result.id)
        sender = sync_sender(self.layer)
        keys, args = self._stored(result.id, *stored, replaced)
        try:
            return run_sync(sender.clients[index], STORE_RESULT, keys, args)
        except redis.ResponseError as error:
            if not out_of_memory_reply(error):
                raise
            channel = task_channel(result.task.queue_name)
            raise sender.memory_refusal(index, channel, error) from error

    def rerun_sync(self, result_id: str, enqueue: Callable[[], str]) -> tuple[str, bool]:
        """Enqueue a result's task again once: ``(new id, True)`` the first time, then the id
        of that first run and False (the claim lives as long as a result)."""
        client, key = self._sync_client(result_id), task_rerun_key(self.layer.prefix, result_id)
        ttl_s = math.ceil(self.ttl_s)
        if not client.set(key, "", nx=True, ex=ttl_s):
            earlier: Any = client.get(key)
            return _text(earlier or b""), False
        try:
            new_id = enqueue()
        except BaseException:
            client.delete(key)
            raise
        client.set(key, new_id, ex=ttl_s)
        return new_id, True

    def delete_sync(self, result_id: str) -> None:
        with self._sync_client(result_id).pipeline(transaction=False) as pipe:
            self._forget(pipe, result_id)
            pipe.execute()


def _decoded(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    record: dict[str, Any] = json.loads(raw)
    return record


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _datetime(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
