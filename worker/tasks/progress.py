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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer

from worker.names import NAME_RULE, is_valid_group_name
from worker.sending.pools import send_loop

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer

#: The ``"type"`` of progress messages: a consumer handles them in ``task_progress()``.
PROGRESS_TYPE = "task.progress"
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
            loop.call(loop.sender(layer).group_send(self.layer, self.group, message))
            return
        async_to_sync(layer.group_send)(self.group, message)

    async def areport(
        self, done: int, total: int | None = None, detail: str = "", **extra: Any
    ) -> None:
        """Send one progress update from async code."""
        await self._layer().group_send(self.group, self.message(done, total, detail, **extra))

    def _layer(self) -> BaseChannelLayer:
        from channels.layers import get_channel_layer

        layer = get_channel_layer(self.layer)
        if layer is None:
            raise ValueError(f"No channel layer {self.layer!r}: CHANNEL_LAYERS has no such alias.")
        return layer
