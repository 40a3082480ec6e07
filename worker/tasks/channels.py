"""Task channels: ``tasks.<queue_name>`` carries the ``django.tasks`` queue of that name.

``runworker tasks.default`` serves them with the built-in task consumer whatever the project's
``ChannelNameRouter`` lists; every other channel goes to the project's application.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from worker.names import is_task_channel

if TYPE_CHECKING:
    from routing.types import ASGIApp, Receive, Scope, Send


class TaskChannelRouter:
    """Send channel scopes of task channels to the task consumer, the rest to ``application``.

    ``max_attempts`` maps task channels to the worker's attempts for them, so the consumer knows
    whether a failure is final (``FAILED``) or will be retried (``READY`` again).
    ``task_threads`` maps task channels to the size of the thread pool their sync task
    functions run in (one pool per channel); a channel it does not name uses the event loop's
    default executor.

    ::

        application = TaskChannelRouter(load_application(), {"tasks.default": 5})
    """

    def __init__(
        self,
        application: ASGIApp,
        max_attempts: Mapping[str, int] | None = None,
        task_threads: Mapping[str, int] | None = None,
    ):
        self.application = application
        self.max_attempts = dict(max_attempts or {})
        self.task_threads = dict(task_threads or {})
        self._pools: dict[str, ThreadPoolExecutor] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = scope.get("channel")
        if scope["type"] == "channel" and isinstance(channel, str) and is_task_channel(channel):
            # Imported here so projects without django.tasks never import it.
            from worker.tasks.consumer import TaskConsumer

            consumer = TaskConsumer(self.max_attempts.get(channel, 1), self._pool(channel))
            await consumer(scope, receive, send)
            return
        await self.application(scope, receive, send)

    def _pool(self, channel: str) -> ThreadPoolExecutor | None:
        """The channel's thread pool, made when its first instance starts."""
        threads = self.task_threads.get(channel)
        if threads is None:
            return None
        pool = self._pools.get(channel)
        if pool is None:
            pool = self._pools[channel] = ThreadPoolExecutor(
                max_workers=threads, thread_name_prefix=f"{channel} task"
            )
        return pool


def with_task_channels(
    application: ASGIApp,
    max_attempts: Mapping[str, int] | None = None,
    task_threads: Mapping[str, int] | None = None,
) -> ASGIApp:
    """``application`` that also serves task channels (see ``TaskChannelRouter``)."""
    return TaskChannelRouter(application, max_attempts, task_threads)
