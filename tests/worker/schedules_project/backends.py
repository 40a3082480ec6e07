"""A task backend that waits before each enqueue: a wide window between a schedule's claim of a
tick and its send, where a test kills the worker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, ParamSpec, TypeVar

from worker.tasks.backend import ChannelLayerBackend
from worker.tasks.compat import Task, TaskResult

P = ParamSpec("P")
R = TypeVar("R")

#: How long each enqueue waits before it stores the result and sends the task.
ENQUEUE_DELAY_S = 0.5


class SlowBackend(ChannelLayerBackend):
    async def aenqueue(
        self, task: Task[P, R], args: Iterable[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        await asyncio.sleep(ENQUEUE_DELAY_S)
        return await super().aenqueue(task, args, kwargs)
