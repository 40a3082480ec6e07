"""Report progress to a Channels group, so a websocket consumer can show a task's work live.

::

    @task(takes_context=True)
    def resize(context, photo_id):
        progress = Progress.for_task(context.task_result.id)
        for done, size in enumerate(SIZES, start=1):
            make_thumbnail(photo_id, size)
            progress.report(done, len(SIZES), detail=f"{size} px")

    class ProgressConsumer(AsyncJsonWebsocketConsumer):
        async def connect(self):
            task_id = self.scope["url_route"]["kwargs"]["task_id"]
            await self.channel_layer.group_add(progress_group(task_id), self.channel_name)
            await self.accept()

        async def task_progress(self, event):  # {"type": "task.progress", "done": 2, ...}
            await self.send_json(event)

The last report of a task is also kept, with its time, as long as the task's result:
``Progress.last(task_id)`` (``await Progress.alast(task_id)`` in async code) reads it, so a page
that connects late or reloads sees where the task is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer

from worker.names import NAME_RULE, is_valid_group_name
from worker.sending.pools import AsyncSender, send_loop
from worker.transport.keys import task_progress_key, task_result_key
from worker.transport.scripts import KEEP_PROGRESS, run

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer

#: The ``"type"`` of progress messages: a consumer handles them in ``task_progress()``.
PROGRESS_TYPE = "task.progress"
#: The key ``Progress.last()`` adds to a kept report: when it was sent, ISO 8601 in UTC.
REPORTED_AT_KEY = "reported_at"
_GROUP_PREFIX = "task-progress."


def progress_group(task_id: str) -> str:
    """The group that receives the progress of the task whose result id is ``task_id``."""
    return f"{_GROUP_PREFIX}{task_id}"


@dataclass(frozen=True, slots=True)
class Progress:
    """Sends ``{"type": "task.progress", "done": ..., "total": ..., "detail": ...}`` to ``group``.

    ``report()`` is for sync code (a sync task, in its worker thread), ``areport()`` for async
    code. Group members that are gone cost nothing; a group nobody joined drops the message.
    """

    group: str
    layer: str = "default"
    task_id: str | None = None

    def __post_init__(self) -> None:
        if not is_valid_group_name(self._layer(), self.group):
            raise ValueError(
                f"Progress group {self.group!r} is not a valid group name: use {NAME_RULE}."
            )

    @classmethod
    def for_task(cls, task_id: str, layer: str = "default") -> Progress:
        """Progress of a task, sent to ``progress_group(task_id)``."""
        return cls(progress_group(task_id), layer, task_id)

    def message(self, done: int, total: int | None, detail: str, **extra: Any) -> dict[str, Any]:
        message = {"type": PROGRESS_TYPE, "done": done, "total": total, "detail": detail}
        if self.task_id is not None:
            message["task_id"] = self.task_id
        return message | extra

    def report(self, done: int, total: int | None = None, detail: str = "", **extra: Any) -> None:
        """Send one progress update from sync code."""
        layer = self._layer()
        message = self.message(done, total, detail, **extra)
        if isinstance(layer, RedisChannelLayer):
            # One set of pooled connections for every call, on the send loop.
            loop = send_loop()
            loop.call(self._publish(loop.sender(layer), message))
            return
        async_to_sync(layer.group_send)(self.group, message)

    async def areport(
        self, done: int, total: int | None = None, detail: str = "", **extra: Any
    ) -> None:
        """Send one progress update from async code."""
        layer = self._layer()
        message = self.message(done, total, detail, **extra)
        await layer.group_send(self.group, message)
        if isinstance(layer, RedisChannelLayer) and self.task_id is not None:
            loop = send_loop()
            await loop.acall(_keep(loop.sender(layer), self.task_id, message))

    async def _publish(self, sender: AsyncSender, message: dict[str, Any]) -> None:
        await sender.group_send(self.layer, self.group, message)
        if self.task_id is not None:
            await _keep(sender, self.task_id, message)

    @classmethod
    def last(cls, task_id: str, layer: str = "default") -> dict[str, Any] | None:
        """The task's last report with its ``reported_at``, or None (none yet, or expired).

        Reports are kept on the Redis layer ``layer`` as long as the task's result there.
        """
        loop = send_loop()
        return loop.call(_last(loop.sender(_redis_layer(layer)), task_id))

    @classmethod
    async def alast(cls, task_id: str, layer: str = "default") -> dict[str, Any] | None:
        """``last()`` from async code, e.g. a websocket consumer's ``connect()``."""
        loop = send_loop()
        return await loop.acall(_last(loop.sender(_redis_layer(layer)), task_id))

    def _layer(self) -> BaseChannelLayer:
        return _channel_layer(self.layer)


def _channel_layer(alias: str) -> BaseChannelLayer:
    from channels.layers import get_channel_layer

    layer = get_channel_layer(alias)
    if layer is None:
        raise ValueError(f"No channel layer {alias!r}: CHANNEL_LAYERS has no such alias.")
    return layer


def _redis_layer(alias: str) -> RedisChannelLayer:
    layer = _channel_layer(alias)
    if not isinstance(layer, RedisChannelLayer):
        raise ValueError(
            f"Channel layer {alias!r} is a {type(layer).__name__}; progress reports are kept on "
            "a channels_redis RedisChannelLayer only."
        )
    return layer


async def _keep(sender: AsyncSender, task_id: str, message: dict[str, Any]) -> None:
    """Keep ``message`` as the task's last report, beside its result and for as long."""
    layer = sender.layer
    kept = message | {REPORTED_AT_KEY: datetime.now(UTC).isoformat()}
    keys = [task_result_key(layer.prefix, task_id), task_progress_key(layer.prefix, task_id)]
    client = sender.client(int(layer.consistent_hash(task_id)))
    # default=str: a report's extra values that JSON cannot hold are kept as text, not lost.
    await run(client, KEEP_PROGRESS, keys, [json.dumps(kept, default=str)])


async def _last(sender: AsyncSender, task_id: str) -> dict[str, Any] | None:
    layer = sender.layer
    client = sender.client(int(layer.consistent_hash(task_id)))
    raw = await client.get(task_progress_key(layer.prefix, task_id))
    if raw is None:
        return None
    report: dict[str, Any] = json.loads(raw)
    return report
