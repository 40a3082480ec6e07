"""The connections behind ``send()``: pooled per process, per layer, per host.

Sync callers (a WSGI view) use redis-py's thread-safe sync pools from their own thread: one
round trip per send, instead of the thread, event loop and pool that
``async_to_sync(channel_layer.send)`` builds on every call. Async callers hand their coroutine
to one daemon event-loop thread that owns asyncio pools, so no connection is ever bound to a
caller's loop that may close. A forked child (WSGI servers fork) notices the new pid and
builds pools and a loop of its own, leaving the parent's sockets alone.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from channels_redis.utils import create_pool

from worker.transport.keys import ChannelKeys, channel_key
from worker.transport.scripts import SEND

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis as AsyncRedis
    from redis.commands.core import AsyncScript, Script

T = TypeVar("T")


def sync_pool(host: Mapping[str, Any]) -> redis.ConnectionPool:
    """channels-redis's ``create_pool()`` with redis-py's sync classes: same host meaning."""
    options = dict(host)
    if "address" in options:
        return redis.ConnectionPool.from_url(options.pop("address"), **options)
    master_name = options.pop("master_name", None)
    if master_name is not None:
        from redis.sentinel import Sentinel, SentinelConnectionPool

        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            options.pop("sentinels"), sentinel_kwargs=options.pop("sentinel_kwargs", None)
        )
        return SentinelConnectionPool(master_name, sentinel, **options)  # type: ignore[no-untyped-call]
    return redis.ConnectionPool(**options)


class _Channels:
    """Where and how channels-redis stores a channel on a layer's hosts."""

    def __init__(self, layer: RedisChannelLayer) -> None:
        # Holding the layer keeps its id() from being reused by another layer.
        self.layer = layer
        # next() on itertools.cycle is atomic under the GIL, so threads may share it.
        self._next_host = itertools.cycle(range(len(layer.hosts)))

    def host_for(self, channel: str) -> int:
        """The host channels-redis picks: fixed for ``!`` channels, else round robin."""
        if "!" in channel:
            return int(self.layer.consistent_hash(channel))
        return next(self._next_host)

    def send_arguments(self, channel: str, member: bytes, capacity: int) -> tuple[str, list[Any]]:
        layer = self.layer
        key = channel_key(
            layer.prefix, channel, layer.non_local_name(channel) if "!" in channel else None
        )
        expiry = int(layer.expiry)
        now = time.time()
        return key, [int(now) - expiry, capacity, member, now, expiry]

    def delayed_key(self, channel: str) -> str:
        return ChannelKeys.for_channel(self.layer.prefix, channel).delayed


class SyncSender(_Channels):
    """Sync clients for one layer's hosts, shared by every thread of the process."""

    def __init__(self, layer: RedisChannelLayer) -> None:
        super().__init__(layer)
        self.clients = [redis.Redis(connection_pool=sync_pool(host)) for host in layer.hosts]
        self._scripts: list[Script] = [client.register_script(SEND) for client in self.clients]

    def send(self, channel: str, member: bytes, capacity: int) -> int | None:
        """Add ``member`` to ``channel``; the host index, or None when the channel is full."""
        index = self.host_for(channel)
        key, args = self.send_arguments(channel, member, capacity)
        return index if self._scripts[index](keys=[key], args=args) else None

    def defer(self, channel: str, member: bytes, due_at: float) -> None:
        """Park ``member`` in the channel's delayed set until ``due_at`` (epoch seconds).

        Workers consuming the channel move it to the head of the channel once it is due, as
        they do with retries; the delayed set is not trimmed by the layer's expiry.
        """
        self.clients[self.host_for(channel)].zadd(self.delayed_key(channel), {member: due_at})

    def close(self) -> None:
        for client in self.clients:
            client.close()
            client.connection_pool.disconnect()


class AsyncSender(_Channels):
    """Asyncio clients for one layer's hosts, living on the send loop."""

    def __init__(self, layer: RedisChannelLayer) -> None:
        super().__init__(layer)
        self.clients: list[AsyncRedis] = []
        self._scripts: list[AsyncScript] = []
        self._group_layer: RedisChannelLayer | None = None

    def client(self, index: int) -> AsyncRedis:
        if not self.clients:
            from redis.asyncio import Redis

            self.clients = [Redis(connection_pool=create_pool(host)) for host in self.layer.hosts]
            self._scripts = [client.register_script(SEND) for client in self.clients]
        return self.clients[index]

    async def send(self, channel: str, member: bytes, capacity: int) -> int | None:
        """``SyncSender.send()`` on the send loop."""
        index = self.host_for(channel)
        self.client(index)
        key, args = self.send_arguments(channel, member, capacity)
        sent: Any = await self._scripts[index](keys=[key], args=args)
        return index if sent else None

    async def defer(self, channel: str, member: bytes, due_at: float) -> None:
        """``SyncSender.defer()`` on the send loop."""
        await self.client(self.host_for(channel)).zadd(self.delayed_key(channel), {member: due_at})

    async def group_send(self, alias: str, group: str, message: dict[str, Any]) -> None:
        """The layer's ``group_send()`` on the send loop.

        It runs on an instance of the layer of its own, built from the same settings, so the
        caller's instance never holds connections bound to this loop (its ``close_pools()``
        would close them from the wrong loop).
        """
        if self._group_layer is None:
            from channels.layers import channel_layers

            self._group_layer = channel_layers.make_backend(alias)
        assert self._group_layer is not None
        await self._group_layer.group_send(group, message)

    async def aclose(self) -> None:
        clients, self.clients, self._scripts = self.clients, [], []
        for client in clients:
            await client.aclose(close_connection_pool=True)
        group_layer, self._group_layer = self._group_layer, None
        if group_layer is not None:
            await group_layer.close_pools()


class SendLoop:
    """A daemon thread running the event loop that owns this process's async connections."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.senders: dict[int, AsyncSender] = {}
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="channel-worker send loop", daemon=True
        )
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result from a sync caller."""
        if threading.get_ident() == self._thread.ident:
            coroutine.close()
            raise RuntimeError(
                "A sync send was called on channel-worker's own send loop; use the async API."
            )
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def acall(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and await its result from another loop."""
        if asyncio.get_running_loop() is self.loop:
            return await coroutine
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    def sender(self, layer: RedisChannelLayer) -> AsyncSender:
        return _cached(self.senders, layer, AsyncSender)

    async def aclose(self) -> None:
        senders, self.senders = list(self.senders.values()), {}
        for sender in senders:
            await sender.aclose()


class _Process:
    """This process's pools and send loop; replaced wholesale after a fork."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.sync_senders: dict[int, SyncSender] = {}
        self.loop: SendLoop | None = None


SenderT = TypeVar("SenderT", SyncSender, AsyncSender)

_lock = threading.Lock()
_process = _Process()
# State inherited from a parent process: its sockets belong to the parent, so it is kept
# referenced (never closed or collected) rather than torn down from the child.
_inherited: list[_Process] = []


def _current() -> _Process:
    global _process
    current = _process
    if current.pid == os.getpid():
        return current
    with _lock:
        if _process.pid != os.getpid():
            _inherited.append(_process)
            _process = _Process()
        return _process


def _cached(senders: dict[int, SenderT], layer: RedisChannelLayer, kind: type[SenderT]) -> SenderT:
    sender = senders.get(id(layer))
    if sender is not None and sender.layer is layer:
        return sender
    with _lock:
        sender = senders.get(id(layer))
        if sender is None or sender.layer is not layer:
            sender = senders[id(layer)] = kind(layer)
        return sender


def sync_sender(layer: RedisChannelLayer) -> SyncSender:
    """This process's sync clients for ``layer``."""
    return _cached(_current().sync_senders, layer, SyncSender)


def send_loop() -> SendLoop:
    """This process's send loop, started on first use."""
    process = _current()
    if process.loop is None:
        with _lock:
            if process.loop is None:
                process.loop = SendLoop()
    return process.loop


def close_connections() -> None:
    """Close this process's send connections; they reopen on the next send (tests use this)."""
    process = _current()
    with _lock:
        senders, process.sync_senders = list(process.sync_senders.values()), {}
    for sender in senders:
        sender.close()
    if process.loop is not None:
        process.loop.call(process.loop.aclose())
