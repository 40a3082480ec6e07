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
import math
import os
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from channels_redis.utils import create_pool

from worker.errors import RedisOutOfMemory
from worker.transport.keys import ChannelKeys, channel_key
from worker.transport.layer import redact
from worker.transport.scripts import (
    DEFER,
    SEND,
    Script,
    run,
    run_sync,
)

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis as AsyncRedis

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Along:
    """A record to store with a send (a task's result), on host ``index``.

    On the send's own host, ``keys`` and ``args`` follow the send script's own (``send.lua`` and
    ``defer.lua`` store the record in the same command, and not at all when the channel is
    full); on another host, ``script`` stores it first with them, in a call of its own.
    """

    index: int
    keys: list[Any]
    args: list[Any]
    script: Script


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

    def host_for(self, channel: str, priority: int | None = None) -> int:
        """The host channels-redis picks: fixed for ``!`` channels, else round robin.

        A message with a ``priority`` (a task) goes to the channel's own host, picked by the
        channel name as for ``!`` channels, so every level of its queue is on one host and the
        order between them holds across the layer's hosts.
        """
        if "!" in channel or priority is not None:
            return int(self.layer.consistent_hash(channel))
        return next(self._next_host)

    def send_arguments(
        self, channel: str, member: bytes, capacity: int, priority: int | None = None
    ) -> tuple[list[str], list[Any]]:
        layer = self.layer
        key = channel_key(
            layer.prefix, channel, layer.non_local_name(channel) if "!" in channel else None
        )
        keys = ChannelKeys.for_channel(layer.prefix, channel)
        expiry = int(layer.expiry)
        now = time.time()
        return [key, keys.levels], [
            *(int(now) - expiry, capacity, member, now, expiry),
            *(priority or 0, keys.level_prefix),
        ]

    def defer_keys(self, channel: str) -> list[str]:
        keys = ChannelKeys.for_channel(self.layer.prefix, channel)
        return [keys.delayed, keys.member_levels]

    def defer_arguments(self, member: bytes, due_at: float, priority: int | None) -> list[Any]:
        # The delayed set lasts until the message is due and then as long as the layer keeps
        # a message (scripts/defer.lua).
        lifetime_s = math.ceil(max(0.0, due_at - time.time()) + float(self.layer.expiry))
        return [member, due_at, lifetime_s, priority or 0]

    def out_of_memory(
        self, index: int, channel: str, error: redis.ResponseError, memory: Mapping[str, Any]
    ) -> RedisOutOfMemory:
        """The refusal of a send by a Redis at its ``maxmemory``, naming the limit and the fix."""
        host = self.layer.hosts[index]
        shown = redact(host.get("address", host) if isinstance(host, Mapping) else host)
        limit_bytes = int(memory.get("maxmemory", 0) or 0)
        policy = str(memory.get("maxmemory_policy", ""))
        limit = (
            f"maxmemory {memory.get('maxmemory_human', limit_bytes)}, "
            f"maxmemory-policy {policy or 'unknown'}"
            if limit_bytes
            else "its maxmemory"
        )
        return RedisOutOfMemory(
            f"Redis at {shown} refused the message for channel {channel!r}: it is full "
            f"({limit}; {error}), and the layer's own send is refused the same way. Let workers "
            "drain the backlog (start more, or check that they run), lower the layer's "
            "'expiry' or 'capacity', or raise the limit (CONFIG SET maxmemory, or maxmemory in "
            "redis.conf).",
            host=shown,
            maxmemory_bytes=limit_bytes,
            policy=policy,
        )


class SyncSender(_Channels):
    """Sync clients for one layer's hosts, shared by every thread of the process."""

    def __init__(self, layer: RedisChannelLayer) -> None:
        super().__init__(layer)
        self.clients = [redis.Redis(connection_pool=sync_pool(host)) for host in layer.hosts]

    def send(
        self,
        channel: str,
        member: bytes,
        capacity: int,
        priority: int | None = None,
        along: Along | None = None,
    ) -> int | None:
        """Add ``member`` to ``channel``; the host index, or None when the channel is full.

        ``priority`` (-100 to 100, a task's) queues it at that level on the channel's host;
        ``along`` are writes that come before it (see ``Along``).
        """
        index = self.host_for(channel, priority)
        keys, args = self.send_arguments(channel, member, capacity, priority)
        return index if self._run(index, channel, SEND, keys, args, along) else None

    def defer(
        self,
        channel: str,
        member: bytes,
        due_at: float,
        priority: int | None = None,
        along: Along | None = None,
    ) -> None:
        """Park ``member`` in the channel's delayed set until ``due_at`` (epoch seconds).

        Workers consuming the channel move it to the head of the channel once it is due, as
        they do with retries; the delayed set is not trimmed by the layer's expiry.
        """
        index = self.host_for(channel, priority)
        args = self.defer_arguments(member, due_at, priority)
        self._run(index, channel, DEFER, self.defer_keys(channel), args, along)

    def _run(
        self,
        index: int,
        channel: str,
        script: Script,
        keys: list[Any],
        args: list[Any],
        along: Along | None = None,
    ) -> Any:
        if along is not None and along.index == index:
            keys, args = [*keys, *along.keys], [*args, *along.args]
        elif along is not None:
            self._call(along.index, channel, along.script, along.keys, along.args)
        return self._call(index, channel, script, keys, args)

    def _call(
        self, index: int, channel: str, script: Script, keys: list[Any], args: list[Any]
    ) -> Any:
        """Run ``script`` on host ``index``; a refusal for maxmemory names the limit."""
        client = self.clients[index]
        try:
            return run_sync(client, script, keys, args)
        except redis.ResponseError as error:
            if not out_of_memory_reply(error):
                raise
            raise self.out_of_memory(index, channel, error, _memory_sync(client)) from error

    def memory_refusal(
        self, index: int, channel: str, error: redis.ResponseError
    ) -> RedisOutOfMemory:
        """``out_of_memory()`` for another write to host ``index`` on behalf of ``channel``."""
        return self.out_of_memory(index, channel, error, _memory_sync(self.clients[index]))

    def close(self) -> None:
        for client in self.clients:
            client.close()
            client.connection_pool.disconnect()


class AsyncSender(_Channels):
    """Asyncio clients for one layer's hosts, living on the send loop."""

    def __init__(self, layer: RedisChannelLayer) -> None:
        super().__init__(layer)
        self.clients: list[AsyncRedis] = []
        self._group_layer: RedisChannelLayer | None = None

    def client(self, index: int) -> AsyncRedis:
        if not self.clients:
            from redis.asyncio import Redis

            self.clients = [Redis(connection_pool=create_pool(host)) for host in self.layer.hosts]
        return self.clients[index]

    async def send(
        self,
        channel: str,
        member: bytes,
        capacity: int,
        priority: int | None = None,
        along: Along | None = None,
    ) -> int | None:
        """``SyncSender.send()`` on the send loop."""
        index = self.host_for(channel, priority)
        keys, args = self.send_arguments(channel, member, capacity, priority)
        sent = await self._run(index, channel, SEND, keys, args, along)
        return index if sent else None

    async def defer(
        self,
        channel: str,
        member: bytes,
        due_at: float,
        priority: int | None = None,
        along: Along | None = None,
    ) -> None:
        """``SyncSender.defer()`` on the send loop."""
        index = self.host_for(channel, priority)
        args = self.defer_arguments(member, due_at, priority)
        await self._run(index, channel, DEFER, self.defer_keys(channel), args, along)

    async def _run(
        self,
        index: int,
        channel: str,
        script: Script,
        keys: list[Any],
        args: list[Any],
        along: Along | None = None,
    ) -> Any:
        if along is not None and along.index == index:
            keys, args = [*keys, *along.keys], [*args, *along.args]
        elif along is not None:
            await self._call(along.index, channel, along.script, along.keys, along.args)
        return await self._call(index, channel, script, keys, args)

    async def _call(
        self, index: int, channel: str, script: Script, keys: list[Any], args: list[Any]
    ) -> Any:
        """``SyncSender._call()`` on the send loop."""
        client = self.client(index)
        try:
            return await run(client, script, keys, args)
        except redis.ResponseError as error:
            if not out_of_memory_reply(error):
                raise
            memory = await memory_info(client)
            raise self.out_of_memory(index, channel, error, memory) from error

    async def memory_refusal(
        self, index: int, channel: str, error: redis.ResponseError
    ) -> RedisOutOfMemory:
        """``SyncSender.memory_refusal()`` on the send loop."""
        return self.out_of_memory(index, channel, error, await memory_info(self.client(index)))

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
        clients, self.clients = self.clients, []
        for client in clients:
            await client.aclose(close_connection_pool=True)
        group_layer, self._group_layer = self._group_layer, None
        if group_layer is not None:
            await group_layer.close_pools()


def out_of_memory_reply(error: redis.ResponseError) -> bool:
    """Whether Redis refused a script for maxmemory.

    Redis 7 refuses a flagged script with an ``OOM`` reply; Redis 6 refuses its first write
    inside the script, reported as "Error running script ... -OOM command not allowed ...".
    """
    return isinstance(error, redis.OutOfMemoryError) or "-OOM command not allowed" in str(error)


def _memory_sync(client: redis.Redis) -> Mapping[str, Any]:
    """The server's ``INFO memory`` for an error message; empty when it cannot be had."""
    try:
        memory: Any = client.info("memory")
    except redis.RedisError:
        return {}
    return dict(memory)


async def memory_info(client: AsyncRedis) -> Mapping[str, Any]:
    """``_memory_sync()`` for an async client."""
    try:
        memory: Any = await client.info("memory")
    except redis.RedisError:
        return {}
    return dict(memory)


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
