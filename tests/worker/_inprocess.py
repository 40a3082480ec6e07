"""Helpers for the in-process worker tests: waits, a running worker, probes, raw members."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import msgpack  # type: ignore[import-untyped]
from channels_redis.core import RedisChannelLayer

from routing import ChannelNameRouter, ProtocolTypeRouter
from routing.types import ASGIApp, Message, Receive, Scope, Send
from worker.config import ChannelConfig
from worker.consume.worker import Worker

# Short blocking pops keep stop() quick; the worker's default is 1 s.
FAST_POLL_S = 0.2
# channels-redis puts this many random bytes before every serialised message.
RANDOM_PREFIX_LENGTH = 12


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` until it has ended.

    On Python 3.11 redis-py can swallow a cancel that lands as a command completes, so one
    cancel is not always enough (the worker repeats its own cancels the same way).
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0, what: str = ""
) -> None:
    """Return once ``predicate()`` is true; fail the test if it is still false after the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"Not true within {timeout_s} s: {what or predicate!r}")
        await asyncio.sleep(0.01)


def channel_key(layer: RedisChannelLayer, channel: str) -> str:
    """The sorted set channels-redis keeps a general channel's messages in."""
    return f"{layer.prefix}{channel}"


async def depth(layer: RedisChannelLayer, channel: str, host_index: int = 0) -> int:
    """How many messages wait in Redis on ``channel`` (ZCARD of its key) on one host."""
    count: int = await layer.connection(host_index).zcard(channel_key(layer, channel))
    return count


async def wait_for_depth(
    layer: RedisChannelLayer, channel: str, expected: int, timeout_s: float = 10.0
) -> None:
    """Wait until exactly ``expected`` messages wait in Redis on ``channel`` (first host)."""

    async def reached() -> bool:
        return await depth(layer, channel) == expected

    await wait_until(reached, timeout_s, f"{expected} message(s) queued on {channel!r}")


def raw_member(payload: object) -> bytes:
    """A sorted-set member as channels-redis writes it: random prefix, then msgpack."""
    packed: bytes = msgpack.packb(payload)
    return os.urandom(RANDOM_PREFIX_LENGTH) + packed


def channel_app(applications: Mapping[str, ASGIApp]) -> ProtocolTypeRouter:
    """A root application like a project's asgi.py, serving ``applications`` by channel name."""
    return ProtocolTypeRouter({"channel": ChannelNameRouter(applications)})


def make_worker(
    application: ASGIApp,
    channels: list[str],
    layer: RedisChannelLayer,
    config: ChannelConfig | None = None,
    **options: Any,
) -> Worker:
    """A ``Worker`` with ``config`` for every channel and a stop event of its own."""
    options.setdefault("poll_timeout_s", FAST_POLL_S)
    return Worker(
        application,
        channels,
        layer,
        default_config=config or ChannelConfig(),
        stop_event=asyncio.Event(),
        **options,
    )


@asynccontextmanager
async def running(
    worker: Worker, stop_timeout_s: float = 20.0
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``worker`` in a task for the block; stop it and wait for it on the way out."""
    task = asyncio.create_task(worker.run(), name="worker under test")
    try:
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(task, stop_timeout_s)


class Probe:
    """Records what handlers did; ``gate`` holds handlers until the test opens it."""

    def __init__(self, *, gated: bool = False) -> None:
        self.started: list[Any] = []
        self.finished: list[Any] = []
        self.scopes: list[Scope] = []
        self.messages: list[dict[str, Any]] = []
        self.running = 0
        self.max_running = 0
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()

    def enter(self, scope: Scope, message: Message) -> None:
        self.scopes.append(dict(scope))
        self.messages.append(dict(message))
        self.started.append(message.get("n"))
        self.running += 1
        self.max_running = max(self.max_running, self.running)

    def leave(self, message: Message) -> None:
        self.running -= 1
        self.finished.append(message.get("n"))

    async def handle(self, scope: Scope, message: Message) -> None:
        self.enter(scope, message)
        try:
            await self.gate.wait()
        finally:
            self.leave(message)


def looping_app(probe: Probe) -> ASGIApp:
    """A plain ASGI application that handles messages until it is cancelled."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            await probe.handle(scope, message)

    return application


async def send_numbered(
    layer: RedisChannelLayer, channel: str, count: int, message_type: str = "job.run"
) -> None:
    for number in range(count):
        await layer.send(channel, {"type": message_type, "n": number})
