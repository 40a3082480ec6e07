"""The channel layer the worker serves: validation, host handling and Redis connections."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from channels_redis.core import RedisChannelLayer
from channels_redis.utils import create_pool

from worker.constants import READ_TIMEOUT_MARGIN_S
from worker.errors import UnsupportedLayer

if TYPE_CHECKING:
    from redis.asyncio import Redis

_CLUSTER_NOTE = (
    "Redis Cluster is not supported by channels-redis; list several independent hosts in "
    "'hosts' to shard channels instead."
)


def check_layer(layer: object, alias: str) -> RedisChannelLayer:
    """Return ``layer`` if the worker can consume from it, else explain why not."""
    if layer is None:
        raise UnsupportedLayer(
            f"No channel layer {alias!r}: CHANNEL_LAYERS has no such alias. runworker needs "
            "channels_redis.core.RedisChannelLayer, e.g. CHANNEL_LAYERS = {'default': "
            "{'BACKEND': 'channels_redis.core.RedisChannelLayer', 'CONFIG': {'hosts': "
            "['redis://localhost:6379']}}}."
        )
    name = f"{type(layer).__module__}.{type(layer).__qualname__}"
    if isinstance(layer, RedisChannelLayer):
        return layer
    if type(layer).__name__ == "InMemoryChannelLayer":
        reason = "it lives inside one process, so messages sent by your web server never reach it"
    elif type(layer).__name__ == "RedisPubSubChannelLayer":
        reason = "it delivers every message to every subscriber, so each worker would run each task"
    else:
        reason = "the worker reads channels-redis's queues directly"
    raise UnsupportedLayer(
        f"Channel layer {alias!r} is {name}, which runworker cannot serve: {reason}. Use "
        f"channels_redis.core.RedisChannelLayer. {_CLUSTER_NOTE}"
    )


def with_read_timeout(host: Mapping[str, Any], minimum_s: float) -> dict[str, Any]:
    """``host`` with a socket read timeout of at least ``minimum_s``.

    A blocking pop that waits ``n`` seconds must not hit a read timeout shorter than ``n``
    (django/channels_redis#422), whatever the user's configuration or redis-py's default says.
    A ``socket_timeout`` in an address URL wins over keyword arguments in redis-py, so it is
    raised there too.
    """
    patched = dict(host)
    current = patched.get("socket_timeout")
    if current is None or float(current) < minimum_s:
        patched["socket_timeout"] = minimum_s
    address = patched.get("address")
    if isinstance(address, str) and "socket_timeout=" in address:
        parts = urlsplit(address)
        query = [
            (key, value if key != "socket_timeout" else str(max(float(value), minimum_s)))
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        patched["address"] = urlunsplit(parts._replace(query=urlencode(query)))
    return patched


def harden_layer(layer: RedisChannelLayer) -> None:
    """Let the layer's own blocking receives survive idle time, and end when cancelled.

    Consumers in the worker call ``get_channel_layer()`` for ``group_send`` and for their
    ``new_channel`` receive, which blocks ``brpop_timeout`` seconds per call. Pools are created
    lazily from ``layer.hosts``, so adjusting the host entries before first use is enough.
    A consumer that fails cancels that receive; it must end then (``_ends_when_cancelled``).
    """
    minimum_s = float(layer.brpop_timeout) + READ_TIMEOUT_MARGIN_S
    layer.hosts = [with_read_timeout(host, minimum_s) for host in layer.hosts]
    if not getattr(layer.receive, _ENDS_WHEN_CANCELLED, False):
        layer.receive = _ends_when_cancelled(layer.receive)


_ENDS_WHEN_CANCELLED = "_channel_worker_ends_when_cancelled"
_CANCEL_RETRY_S = 0.05


def _ends_when_cancelled(
    receive: Callable[[str], Awaitable[Any]],
) -> Callable[[str], Awaitable[Any]]:
    """``receive`` that ends as soon as it is cancelled, even on Python 3.11.

    A Channels consumer whose handler raises cancels its own layer receive once and waits for
    it. On Python 3.11 redis-py's ``asyncio.wait_for`` around a socket write swallows a cancel
    that lands just as the write completes, so that receive went on blocking in Redis, pop
    after pop, and the failed message's slot never came free. Cancel again until it has ended.
    """

    @functools.wraps(receive)
    async def receive_until_cancelled(channel: str) -> Any:
        pending = asyncio.ensure_future(receive(channel))
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            while not pending.done():
                pending.cancel()
                await asyncio.wait({pending}, timeout=_CANCEL_RETRY_S)
            if not pending.cancelled():
                pending.exception()  # retrieved: the caller asked for no result
            raise

    setattr(receive_until_cancelled, _ENDS_WHEN_CANCELLED, True)
    return receive_until_cancelled


def connect(layer: RedisChannelLayer, block_s: float) -> list[Redis]:
    """One client per layer host, built from the layer's own host configuration.

    Each client owns its pool, so ``await client.aclose()`` also closes its connections.
    """
    from redis.asyncio import Redis

    minimum_s = block_s + READ_TIMEOUT_MARGIN_S
    return [
        Redis.from_pool(create_pool(with_read_timeout(host, minimum_s))) for host in layer.hosts
    ]


_CREDENTIALS = re.compile(r"(?<=://)[^@/]*@")
# redis-py also reads credentials from the query: ``redis://host/0?password=...``.
_QUERY_SECRET = re.compile(r"(?<=[?&])([^=&#]*pass[^=&#]*=)[^&#]*", re.IGNORECASE)


def redact(value: object) -> str:
    """A host description with passwords removed, safe to log."""
    if isinstance(value, Mapping):
        shown = {
            key: ("***" if "password" in str(key).lower() else redact(item))
            for key, item in value.items()
        }
        return repr(shown)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(redact(item) for item in value) + "]"
    text = str(value)
    if "://" not in text:
        return text
    return _QUERY_SECRET.sub(r"\1***", _CREDENTIALS.sub("***@", text))


def describe_hosts(layer: RedisChannelLayer) -> str:
    """The layer's hosts for the start-up line, credentials redacted."""
    return ", ".join(host_descriptions(layer))


def host_descriptions(layer: RedisChannelLayer) -> list[str]:
    """Each of the layer's hosts for people, credentials redacted, in the layer's order."""
    return [
        redact(host.get("address", host)) if isinstance(host, Mapping) else redact(host)
        for host in layer.hosts
    ]
