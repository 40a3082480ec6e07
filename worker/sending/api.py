"""Send messages to worker channels from Django: checked first, then one Redis round trip.

::

    from worker import asend, send, send_on_commit

    send("thumbnails-generate", {"type": "thumbnails.generate", "id": 7})        # sync code
    await asend("thumbnails-generate", {"type": "thumbnails.generate", "id": 7})  # async code
    send_on_commit("thumbnails-generate", {"type": "thumbnails.generate", "id": photo.pk})

Each call checks the channel name, the message (a dict with a str ``"type"`` that the layer can
serialise, under ``CHANNEL_WORKER["MAX_SEND_BYTES"]``) and that the project's
``ASGI_APPLICATION`` consumes the channel, then adds it the way channels-redis's
``channel_layer.send()`` does, so a worker in either delivery mode (or Channels' own) reads it.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer

from worker.config import worker_setting
from worker.constants import DEFAULT_MAX_MESSAGE_BYTES
from worker.errors import (
    ChannelAtCapacity,
    ConfigurationError,
    InvalidChannelName,
    MessageNotSendable,
    MessageTooLarge,
)
from worker.names import NAME_RULE, PROCESS_LOCAL_RULE, is_valid_channel_name
from worker.sending.known import check_known_channel
from worker.sending.pools import Along, send_loop, sync_sender

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer

__all__ = ["asend", "send", "send_on_commit"]

DEFAULT_LAYER = "default"
# channels-redis adds this key to messages for "!" channels; a sender must not.
_RESERVED_KEY = "__asgi_channel__"


def send(channel: str, message: dict[str, Any], *, layer: str = DEFAULT_LAYER) -> None:
    """Check ``message`` and send it to ``channel`` on the ``layer`` alias, from sync code.

    Raises ``InvalidChannelName``, ``MessageNotSendable`` (``MessageTooLarge``),
    ``UnknownChannel``, ``ChannelAtCapacity`` or ``RedisOutOfMemory`` (Redis is at its
    ``maxmemory``), all subclasses of ``SendError``.
    """
    deliver(prepare(channel, message, layer))


async def asend(channel: str, message: dict[str, Any], *, layer: str = DEFAULT_LAYER) -> None:
    """``send()`` for async code."""
    await adeliver(prepare(channel, message, layer))


def send_on_commit(
    channel: str,
    message: dict[str, Any],
    *,
    layer: str = DEFAULT_LAYER,
    using: str | None = None,
    robust: bool = False,
) -> None:
    """Send once the current transaction of database ``using`` commits; never on a rollback.

    The message is checked and serialised now, so a mistake raises here, inside the view.
    Outside a transaction (autocommit) it is sent at once. A send that fails at commit time
    raises from the end of the ``atomic()`` block, unless ``robust=True`` only logs it
    (``transaction.on_commit`` semantics).
    """
    from django.db import transaction

    prepared = prepare(channel, message, layer)
    transaction.on_commit(functools.partial(deliver, prepared), using=using, robust=robust)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked message for one channel, serialised when the layer is channels-redis."""

    channel: str
    alias: str
    layer: BaseChannelLayer
    message: dict[str, Any]
    member: bytes | None
    #: A task's priority: queued at that level, on the channel's own host; None for a message.
    priority: int | None = None


def prepare(
    channel: str,
    message: dict[str, Any],
    alias: str,
    *,
    check_known: bool = True,
    priority: int | None = None,
) -> Prepared:
    """Every check ``send()`` makes before it talks to Redis (``priority``: see ``Prepared``)."""
    layer = _layer(alias)
    _check_channel_name(layer, channel)
    _check_message(channel, message)
    if check_known:
        check_known_channel(channel, message["type"], layer, alias)
    payload = dict(message)
    if not isinstance(layer, RedisChannelLayer):
        return Prepared(channel, alias, layer, payload, None)
    if "!" in channel:
        payload[_RESERVED_KEY] = channel
    member = _serialise(layer, channel, payload)
    _check_size(channel, member)
    return Prepared(channel, alias, layer, payload, member, priority)


def deliver(prepared: Prepared, due_at: float | None = None) -> None:
    """Send a prepared message from sync code (deferred to ``due_at`` when given)."""
    if prepared.member is None:
        try:
            async_to_sync(prepared.layer.send)(prepared.channel, dict(prepared.message))
        except ChannelFull as error:
            raise _full(prepared, _capacity(prepared)) from error
        return
    redis_send_sync(prepared, due_at)


async def adeliver(prepared: Prepared, due_at: float | None = None) -> None:
    """Send a prepared message from async code (deferred to ``due_at`` when given)."""
    if prepared.member is None:
        try:
            await prepared.layer.send(prepared.channel, dict(prepared.message))
        except ChannelFull as error:
            raise _full(prepared, _capacity(prepared)) from error
        return
    await send_loop().acall(redis_send(prepared, due_at))


def redis_send_sync(
    prepared: Prepared, due_at: float | None = None, along: Along | None = None
) -> None:
    """Add a prepared message to its channel on a channels-redis layer, from this thread.

    ``along``: writes that must land before the message, in its round trip when they are on
    its host (``Along``).
    """
    layer, member = _redis_parts(prepared)
    sender = sync_sender(layer)
    if due_at is not None and due_at > time.time():
        sender.defer(prepared.channel, member, due_at, prepared.priority, along)
        return
    capacity = _capacity(prepared)
    if sender.send(prepared.channel, member, capacity, prepared.priority, along) is None:
        raise _full(prepared, capacity)


async def redis_send(
    prepared: Prepared, due_at: float | None = None, along: Along | None = None
) -> None:
    """``redis_send_sync()`` for coroutines running on the send loop."""
    layer, member = _redis_parts(prepared)
    sender = send_loop().sender(layer)
    if due_at is not None and due_at > time.time():
        await sender.defer(prepared.channel, member, due_at, prepared.priority, along)
        return
    capacity = _capacity(prepared)
    if await sender.send(prepared.channel, member, capacity, prepared.priority, along) is None:
        raise _full(prepared, capacity)


def _redis_parts(prepared: Prepared) -> tuple[RedisChannelLayer, bytes]:
    assert isinstance(prepared.layer, RedisChannelLayer)
    assert prepared.member is not None
    return prepared.layer, prepared.member


def _capacity(prepared: Prepared) -> int:
    return int(prepared.layer.get_capacity(prepared.channel))


def _full(prepared: Prepared, capacity: int) -> ChannelAtCapacity:
    alias, channel = prepared.alias, prepared.channel
    return ChannelAtCapacity(
        f"Channel {channel!r} is full: it holds its capacity of {capacity} message(s) on layer "
        f"{alias!r}, so its consumers are not keeping up or none is running. Start more "
        f"workers, or raise the capacity: CHANNEL_LAYERS[{alias!r}]['CONFIG']"
        f"['channel_capacity'] = {{{channel!r}: {capacity * 10}}} ('capacity' sets every "
        "channel's).",
        channel=channel,
        capacity=capacity,
    )


def _layer(alias: str) -> BaseChannelLayer:
    from channels.layers import get_channel_layer

    layer = get_channel_layer(alias)
    if layer is None:
        raise ConfigurationError(
            f"No channel layer {alias!r}: CHANNEL_LAYERS has no such alias; send to a "
            "configured alias, e.g. layer='default'."
        )
    return layer


def _check_channel_name(layer: BaseChannelLayer, channel: object) -> None:
    if not is_valid_channel_name(layer, channel):
        raise InvalidChannelName(
            f"Channel name {channel!r} is not valid: use {NAME_RULE} ({PROCESS_LOCAL_RULE}), "
            "e.g. 'thumbnails-generate'."
        )


def _check_message(channel: str, message: object) -> None:
    if not isinstance(message, dict):
        raise MessageNotSendable(
            f"Message for channel {channel!r} is a {type(message).__name__}, not a dict; "
            "channel messages are dicts with a 'type' key, e.g. "
            "{'type': 'thumbnails.generate', 'id': 7}."
        )
    if not isinstance(message.get("type"), str):
        raise MessageNotSendable(
            f"Message for channel {channel!r} has no str 'type' key (got "
            f"{message.get('type')!r}); the type names the consumer method that handles it, "
            "e.g. {'type': 'thumbnails.generate'} calls thumbnails_generate()."
        )
    if _RESERVED_KEY in message:
        raise MessageNotSendable(
            f"Message for channel {channel!r} has the key {_RESERVED_KEY!r}, which "
            "channels-redis reserves for process-specific channels; remove it."
        )


def _serialise(layer: RedisChannelLayer, channel: str, payload: dict[str, Any]) -> bytes:
    try:
        member: bytes = layer.serialize(payload)
    except Exception as error:
        culprit = _culprit(layer, payload, "message") or "the message"
        raise MessageNotSendable(
            f"Message for channel {channel!r} cannot be serialised by the layer: {culprit} "
            f"({type(error).__name__}: {error}); send plain data (str, int, float, bool, None, "
            "lists and dicts), e.g. a primary key or an ISO date instead of an object."
        ) from error
    return member


def _culprit(layer: RedisChannelLayer, value: object, path: str) -> str | None:
    """Where in ``value`` the first value the layer cannot serialise is, and what it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            found = _culprit(layer, item, f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _culprit(layer, item, f"{path}[{index}]")
            if found:
                return found
        return None
    try:
        layer.serialize({"value": value})
    except Exception:
        kind = type(value)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        return f"{path} is a {name}"
    return None


def _check_size(channel: str, member: bytes) -> None:
    from django.conf import settings

    limit = int(
        worker_setting(
            getattr(settings, "CHANNEL_WORKER", None), "MAX_SEND_BYTES", DEFAULT_MAX_MESSAGE_BYTES
        )
    )
    if len(member) > limit:
        raise MessageTooLarge(
            f"Message for channel {channel!r} is {len(member)} bytes serialised, over the "
            f"{limit}-byte limit (CHANNEL_WORKER['MAX_SEND_BYTES']); store large data elsewhere "
            "(a model row, a file) and send its id."
        )
