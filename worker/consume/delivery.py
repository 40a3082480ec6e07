"""A message taken from a channel, and the checks it must pass before a handler sees it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from channels_redis.core import RedisChannelLayer

from worker.errors import InvalidMessage
from worker.names import TASK_MESSAGE_TYPE, TASK_PATH_KEY
from worker.transport.queue import Popped


@dataclass(slots=True)
class Delivery:
    """One message on its way to a handler, with where it came from."""

    channel: str
    host_index: int
    popped: Popped
    message: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)
    #: Wall-clock time the current attempt started (0 until a handler takes it).
    started_at_epoch: float = 0.0
    #: How long a failure of this attempt waits for its retry; None when none would follow.
    retry_delay_s: float | None = None

    @property
    def type(self) -> str:
        return str(self.message["type"])

    @property
    def label(self) -> str:
        """What logs and metrics call the message: a task's import path, else its type."""
        return message_label(self.message) or INVALID_TYPE

    @property
    def attempt(self) -> int:
        """1 for the first delivery, then one more per retry or redelivery."""
        return self.popped.previous_attempts + 1

    @property
    def first_attempt_at(self) -> float:
        return self.popped.first_attempt_at or self.started_at_epoch or time.time()


#: Added to every message handed to a consumer: 1 on the first delivery, 2 on the first retry...
ATTEMPT_KEY = "__attempt__"
#: Added to a task message that would be retried if this attempt failed: the wait before the
#: retry, in seconds, chosen when it is taken, so its result can say when the next attempt comes.
RETRY_DELAY_KEY = "__retry_delay_s__"
#: The type metrics and logs give a message that could not be decoded or has no str type.
INVALID_TYPE = "(invalid)"


def message_label(message: object) -> str | None:
    """What logs, metrics and dead letters call ``message``; None when it has no str type.

    Every task travels as a ``task.run`` message, so a task message is named by the task's
    import path instead: ``add`` and ``send_invoices`` must not look alike.
    """
    if not isinstance(message, dict):
        return None
    kind = message.get("type")
    if kind == TASK_MESSAGE_TYPE:
        path = message.get(TASK_PATH_KEY)
        if isinstance(path, str) and path:
            return path
    return kind if isinstance(kind, str) else None


def decode(layer: RedisChannelLayer, channel: str, host_index: int, popped: Popped) -> Delivery:
    """Decode with the layer's own serializer (prefix, format and encryption keys apply)."""
    try:
        message = layer.deserialize(popped.member)
    except Exception as error:
        raise InvalidMessage(
            f"cannot be decoded by the layer's serializer ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(message, dict):
        raise InvalidMessage(
            f"is a {type(message).__name__}, not a dict; channel messages are dicts with a "
            "'type' key"
        )
    if not isinstance(message.get("type"), str):
        raise InvalidMessage(
            f"has no str 'type' key (got {message.get('type')!r}); the type names the "
            "consumer method that handles it, e.g. {'type': 'thumbnails.generate'}"
        )
    # The attempt number travels in the message, where unmodified consumers can read it.
    message[ATTEMPT_KEY] = popped.previous_attempts + 1
    return Delivery(channel, host_index, popped, message)
