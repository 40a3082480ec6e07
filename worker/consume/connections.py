"""The running worker's own connections, lent to the applications it runs on its loop.

The task consumer writes a task's result through them: a write on the worker's loop instead of
a hop to a thread and a connection of the send API's pools.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis

_serving: ContextVar[tuple[RedisChannelLayer, list[Redis]] | None] = ContextVar(
    "channel_worker_connections", default=None
)


@contextmanager
def lending(layer: RedisChannelLayer, clients: list[Redis]) -> Iterator[None]:
    """Lend ``clients`` (one per host of ``layer``) to the tasks started in this block."""
    token = _serving.set((layer, clients))
    try:
        yield
    finally:
        _serving.reset(token)


def worker_clients(layer: RedisChannelLayer) -> list[Redis] | None:
    """The running worker's clients for ``layer``'s hosts; None outside a worker of ``layer``."""
    lent = _serving.get()
    if lent is None or lent[0] is not layer:
        return None
    return lent[1]
