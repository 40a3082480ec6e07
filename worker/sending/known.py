"""Whether a worker would handle a message, so ``send("thumbnail", ...)`` fails in the view.

A message is refused (``CHANNEL_WORKER["UNKNOWN_CHANNEL"]``: ``"error"``, ``"warn"`` or
``"off"``) when no worker could ever handle it:

- the layer is not channels-redis (``InMemoryChannelLayer`` lives inside one process);
- no ``ChannelNameRouter`` entry of ``ASGI_APPLICATION`` (ours or Channels') consumes the
  channel, read once per application path;
- a task channel ``tasks.<queue_name>`` names a queue no ``ChannelLayerBackend`` in ``TASKS``
  declares;
- the channel's application is a Channels consumer class (``Consumer.as_asgi()``) with no
  handler method for the message's ``"type"`` (Channels calls ``a_b()`` for type ``a.b``).
"""

from __future__ import annotations

import difflib
import functools
import warnings
from collections.abc import Mapping
from typing import Any

from worker.errors import (
    ConfigurationError,
    UnknownChannel,
    UnknownChannelWarning,
    UnknownMessageType,
    UnsupportedLayer,
)
from worker.names import TASK_CHANNEL_PREFIX, is_task_channel
from worker.project import import_string, routed_channels
from worker.transport.layer import check_layer

UNKNOWN_CHANNEL_MODES = ("error", "warn", "off")
#: The task backend class whose queues runworker serves (subclasses count too).
_TASK_BACKEND = "worker.tasks.backend.ChannelLayerBackend"
#: ``django.tasks``'s queue when a backend lists no ``QUEUES``.
_DEFAULT_QUEUE = "default"
_OFF_HINT = "(CHANNEL_WORKER['UNKNOWN_CHANNEL'] = 'warn' only warns)"


def check_known_channel(channel: str, message_type: str, layer: object, alias: str) -> None:
    """Raise ``UnknownChannel`` or ``UnknownMessageType`` (or warn) when no worker would
    handle a ``message_type`` message sent to ``channel`` on ``layer``."""
    if "!" in channel:
        # Process-specific channels belong to one consumer instance, not to the router.
        return
    from django.conf import settings

    mode = (getattr(settings, "CHANNEL_WORKER", None) or {}).get("UNKNOWN_CHANNEL", "error")
    if mode not in UNKNOWN_CHANNEL_MODES:
        raise ConfigurationError(
            f"CHANNEL_WORKER['UNKNOWN_CHANNEL'] is {mode!r}; expected one of "
            f"{', '.join(map(repr, UNKNOWN_CHANNEL_MODES))}."
        )
    if mode == "off":
        return
    problem = _problem(channel, message_type, layer, alias)
    if problem is None:
        return
    if mode == "error":
        raise problem
    warnings.warn(str(problem), UnknownChannelWarning, stacklevel=4)


def _problem(
    channel: str, message_type: str, layer: object, alias: str
) -> UnknownChannel | UnknownMessageType | None:
    try:
        check_layer(layer, alias)
    except UnsupportedLayer as error:
        return UnknownChannel(f"No worker can read channel {channel!r}: {error} {_OFF_HINT}")
    if is_task_channel(channel):
        return _unknown_queue(channel)
    from django.conf import settings

    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        return None
    routed = served_channels(path)
    if routed is None:
        return None
    if channel not in routed:
        return UnknownChannel(unknown_channel_message(channel, path, frozenset(routed)))
    return _unknown_type(channel, message_type, routed[channel])


def unknown_channel_message(channel: str, path: str, known: frozenset[str]) -> str:
    names = ", ".join(map(repr, sorted(known))) or "(none)"
    close = difflib.get_close_matches(channel, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"No consumer for channel {channel!r} in ASGI_APPLICATION {path!r}: the message would "
        f"wait unread until it expires; {hint}known channels: {names}, and task channels "
        f"'{TASK_CHANNEL_PREFIX}<queue_name>'. Add the channel to the ChannelNameRouter or fix "
        f"the name {_OFF_HINT}."
    )


@functools.lru_cache(maxsize=16)
def served_channels(path: str) -> Mapping[str, Any] | None:
    """The channels the application at ``path`` routes, each with its application; None when
    its shape is unknown."""
    try:
        application = import_string(path, "ASGI application")
    except ConfigurationError as error:
        raise ConfigurationError(
            f"{error} send() reads ASGI_APPLICATION to check channel names; fix it or set "
            "CHANNEL_WORKER['UNKNOWN_CHANNEL'] = 'off'."
        ) from error
    return routed_channels(application)


# Task channels


def _unknown_queue(channel: str) -> UnknownChannel | None:
    queue = channel.removeprefix(TASK_CHANNEL_PREFIX)
    declared = declared_task_queues()
    if declared is None or queue in declared:
        return None
    names = ", ".join(map(repr, sorted(declared))) or "(none)"
    close = difflib.get_close_matches(queue, declared, n=1)
    hint = f"did you mean {TASK_CHANNEL_PREFIX}{close[0]}? " if close else ""
    return UnknownChannel(
        f"No TASKS backend declares queue {queue!r}, so no worker runs task channel "
        f"{channel!r}: the message would wait unread until it expires; {hint}declared queues: "
        f"{names}. Add {queue!r} to the QUEUES of a {_TASK_BACKEND} entry in TASKS or fix the "
        f"name {_OFF_HINT}."
    )


def declared_task_queues() -> frozenset[str] | None:
    """The queues of every ``ChannelLayerBackend`` in ``TASKS``; None when one takes any queue.

    Read from the settings on each call: ``enqueue()`` checks its queue against its backend
    already, so only a hand-made ``send("tasks.<queue>", ...)`` comes here.
    """
    from django.conf import settings

    queues: set[str] = set()
    for params in (getattr(settings, "TASKS", None) or {}).values():
        if not _is_channel_layer_backend(params.get("BACKEND")):
            continue
        listed = params.get("QUEUES", [_DEFAULT_QUEUE])
        if not listed:
            # django.tasks lets a backend without queue names take any queue.
            return None
        queues.update(map(str, listed))
    return frozenset(queues)


def _is_channel_layer_backend(path: object) -> bool:
    if not isinstance(path, str):
        return False
    try:
        backend = import_string(path, "TASKS backend")
    except ConfigurationError:
        return False  # Django's own check reports a backend that cannot be imported.
    return isinstance(backend, type) and any(
        f"{kind.__module__}.{kind.__qualname__}" == _TASK_BACKEND for kind in backend.__mro__
    )


# Message types


def _unknown_type(
    channel: str, message_type: str, application: object
) -> UnknownMessageType | None:
    consumer = getattr(application, "consumer_class", None)
    if not isinstance(consumer, type) or not _dispatches_by_type(consumer):
        return None
    method = message_type.replace(".", "_")
    if not method.startswith("_") and callable(getattr(consumer, method, None)):
        return None
    handlers = _handler_names(consumer)
    close = difflib.get_close_matches(method, handlers, n=1)
    hint = f"did you mean {_type_for(close[0], message_type)!r}? " if close else ""
    listed = ", ".join(f"{name}()" for name in handlers) or "(none)"
    return UnknownMessageType(
        f"Consumer {consumer.__module__}.{consumer.__qualname__} of channel {channel!r} has no "
        f"method {method}() for message type {message_type!r}: each attempt would fail and the "
        f"message would be dead-lettered; {hint}its handlers: {listed}. Channels calls the "
        f"method named by the type with '.' replaced by '_' {_OFF_HINT}."
    )


@functools.lru_cache(maxsize=128)
def _dispatches_by_type(consumer: type) -> bool:
    """Whether ``consumer`` is a Channels consumer that uses Channels' own type dispatch."""
    from channels.consumer import AsyncConsumer, SyncConsumer

    if not issubclass(consumer, AsyncConsumer):
        return False
    owner = next(kind for kind in consumer.__mro__ if "dispatch" in vars(kind))
    return owner in (AsyncConsumer, SyncConsumer)


def _handler_names(consumer: type) -> list[str]:
    """The public methods ``consumer`` adds to Channels' base consumer: its handlers."""
    from channels.consumer import SyncConsumer

    base = set(dir(SyncConsumer))
    return sorted(
        name
        for name in dir(consumer)
        if not name.startswith("_") and name not in base and callable(getattr(consumer, name))
    )


def _type_for(method: str, like: str) -> str:
    """A message type that calls ``method``, with dots where ``like`` (the type sent) has them."""
    chars = list(method)
    for index, char in enumerate(like[: len(chars)]):
        if char == "." and chars[index] == "_":
            chars[index] = "."
    return "".join(chars)
