"""Test aid: run what is queued on channels through the real worker, in-process, then return.

Like dramatiq's stub broker ``join()``, but on a real Redis and through the worker's own
dispatch path: messages are decoded by the layer's serializer, handed to consumer instances by
``receive()``, and acknowledged, retried or dead-lettered as ``runworker`` would.

::

    from worker import drain

    async def test_thumbnail_is_generated():
        await asend("thumbnails-generate", {"type": "thumbnails.generate", "id": 7})
        stats = await drain(["thumbnails-generate"])
        assert stats.completed == 1

    def test_add_task():
        result = add.enqueue(2, 3)
        drain_sync(["tasks.default"])
        result.refresh()
        assert result.return_value == 5
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from worker.config import ChannelConfig
from worker.consume.worker import Worker
from worker.ops.stats import Stats
from worker.tasks.channels import with_task_channels
from worker.transport.keys import ChannelKeys
from worker.transport.layer import check_layer, connect

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis

    from routing.types import ASGIApp

__all__ = ["DRAIN_CONFIG", "drain", "drain_sync"]

#: A failing handler is dead-lettered at once, so a test sees it in ``stats.failed`` without
#: waiting for retries; pass ``config=ChannelConfig(max_attempts=3, ...)`` to test retries.
DRAIN_CONFIG = ChannelConfig(max_attempts=1)
_CHECK_INTERVAL_S = 0.01


async def drain(
    channels: Iterable[str],
    *,
    application: ASGIApp | None = None,
    layer: str | RedisChannelLayer = "default",
    config: ChannelConfig = DRAIN_CONFIG,
    delayed_within_s: float = 5.0,
    timeout_s: float = 30.0,
) -> Stats:
    """Consume ``channels`` until nothing is queued, in flight, or due within ``delayed_within_s``.

    ``application`` defaults to ``ASGI_APPLICATION``; task channels (``tasks.<queue_name>``) are
    served by the built-in task consumer either way. Retries and ``run_after`` tasks due within
    ``delayed_within_s`` seconds are waited for; later ones stay in Redis. Returns the worker's
    counters; raises ``TimeoutError`` naming what is left after ``timeout_s``.
    """
    names = list(dict.fromkeys(channels))
    if not config.leased:
        raise ValueError(
            f"drain() runs channels at-least-once, so it can see every message it took in "
            f"Redis; got delivery={config.delivery!r}. Handlers see the same messages either way."
        )
    channel_layer = _layer(layer)
    if application is None:
        from worker.project import load_application

        application = load_application(None, names)
    routed = with_task_channels(application, {name: config.max_attempts for name in names})
    stop = asyncio.Event()
    worker = Worker(routed, names, channel_layer, default_config=config, stop_event=stop)
    clients = connect(channel_layer, 0.0)
    running = asyncio.create_task(worker.run(), name="drain worker")
    try:
        await _wait_drained(
            running, clients, channel_layer.prefix, names, delayed_within_s, timeout_s
        )
    finally:
        stop.set()
        await running
        await asyncio.gather(*(client.aclose(close_connection_pool=True) for client in clients))
    return worker.stats


def drain_sync(
    channels: Iterable[str],
    *,
    application: ASGIApp | None = None,
    layer: str | RedisChannelLayer = "default",
    config: ChannelConfig = DRAIN_CONFIG,
    delayed_within_s: float = 5.0,
    timeout_s: float = 30.0,
) -> Stats:
    """``drain()`` for sync tests, on an event loop of its own."""
    return asyncio.run(
        drain(
            channels,
            application=application,
            layer=layer,
            config=config,
            delayed_within_s=delayed_within_s,
            timeout_s=timeout_s,
        )
    )


async def _wait_drained(
    running: asyncio.Task[None],
    clients: Sequence[Redis],
    prefix: str,
    channels: list[str],
    delayed_within_s: float,
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if running.done():
            # The worker stopped by itself: its error is the answer.
            await running
            raise RuntimeError("The worker stopped before the channels were drained.")
        left = await _left(clients, prefix, channels, time.time() + delayed_within_s)
        if not left:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"drain() timed out after {timeout_s:g} s; still left: {left}.")
        await asyncio.sleep(_CHECK_INTERVAL_S)


async def _left(
    clients: Sequence[Redis], prefix: str, channels: list[str], due_before: float
) -> str:
    """What is still queued, leased (prefetched or running) or due soon, per channel."""
    parts = []
    for channel in channels:
        keys = ChannelKeys.for_channel(prefix, channel)
        queued = leased = due = 0
        for client in clients:
            counts = await _counts(client, keys, due_before)
            queued, leased, due = queued + counts[0], leased + counts[1], due + counts[2]
        if queued or leased or due:
            parts.append(f"{channel!r}: {queued} queued, {leased} in flight, {due} delayed")
    return "; ".join(parts)


async def _counts(client: Redis, keys: ChannelKeys, due_before: float) -> tuple[int, int, int]:
    """Queued (every level), leased and due-soon messages of a channel on one host, read in one
    MULTI: a message moves queue -> lease -> delayed -> queue, and counts read one after another
    can each miss it while it moves, so a drain would end with a retry still to run."""
    levels: list[int] = []
    while True:
        async with client.pipeline(transaction=True) as pipe:
            pipe.zrange(keys.levels, 0, -1)
            pipe.zcard(keys.queue)
            for level in levels:
                pipe.zcard(keys.level_key(level))
            pipe.zcard(keys.inflight)
            pipe.zcount(keys.delayed, "-inf", due_before)
            reply: Any = await pipe.execute()
        seen = sorted(int(level) for level in reply[0])
        if seen == levels:
            return sum(int(count) for count in reply[1:-2]), int(reply[-2]), int(reply[-1])
        # A level came or went since the last read: count again with the levels there now.
        levels = seen


def _layer(layer: str | RedisChannelLayer) -> RedisChannelLayer:
    if not isinstance(layer, str):
        return layer
    from channels.layers import get_channel_layer

    return check_layer(get_channel_layer(layer), layer)
