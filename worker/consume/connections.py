"""The running worker's own connections, lent to the applications it runs on its loop.

The task consumer writes a task's result through them: a write on the worker's loop instead of
a hop to a thread and a connection of the send API's pools, batched with the other tasks' writes
made in the same turn of the loop or while the previous round trip was under way
(``ScriptBatch``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.transport.batch import ScriptBatch

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class Lent:
    """A worker's clients for its layer's hosts (one per host), and a batch of script calls."""

    layer: RedisChannelLayer
    clients: list[Redis]
    scripts: ScriptBatch = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scripts", ScriptBatch(self.clients))


_serving: ContextVar[Lent | None] = ContextVar("channel_worker_connections", default=None)


@contextmanager
def lending(layer: RedisChannelLayer, clients: list[Redis]) -> Iterator[Lent]:
    """Lend ``clients`` (one per host of ``layer``) to the tasks started in this block.

    The block gets what it lends: its ``scripts`` must be closed before the clients are.
    """
    lent = Lent(layer, clients)
    token = _serving.set(lent)
    try:
        yield lent
    finally:
        _serving.reset(token)


def worker_connections(layer: RedisChannelLayer) -> Lent | None:
    """The running worker's connections to ``layer``'s hosts; None outside a worker of ``layer``."""
    lent = _serving.get()
    if lent is None or lent.layer is not layer:
        return None
    return lent
