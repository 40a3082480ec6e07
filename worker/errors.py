"""Every error the worker raises, in one tree under ``WorkerError``.

Each subclasses the builtin it has always been caught as (``ValueError``, ``RuntimeError``,
``TimeoutError``), so ``except ValueError`` around ``send()`` keeps working.
"""

from __future__ import annotations

from channels.exceptions import ChannelFull
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class WorkerError(Exception):
    """Base class of the worker's own errors."""


# Start-up


class ConfigurationError(WorkerError, ValueError):
    """The worker cannot start with the given settings or options."""


class UnsupportedLayer(ConfigurationError):
    """The configured channel layer cannot be served by ``runworker``."""


# Handling messages


class ApplicationSendError(WorkerError, RuntimeError):
    """A worker application called ``send()``, which has no client to reach."""


class InvalidMessage(WorkerError, ValueError):
    """A popped message that no handler can be given; the reason is the message text."""


class HandlerTimeout(WorkerError, TimeoutError):
    """A handler ran past the channel's ``message_timeout_s`` and was cancelled."""


class TaskFailed(WorkerError):
    """A task raised something that is not an ``Exception`` (``SystemExit``, ...)."""


# Sending


class SendError(WorkerError):
    """Base class of everything ``send()``, ``asend()`` and ``send_on_commit()`` refuse."""


class InvalidChannelName(SendError, ValueError):
    """The channel name breaks Channels' naming rules."""


class MessageNotSendable(SendError, ValueError):
    """The message is not a dict with a str ``"type"``, or the layer cannot serialise it."""


class MessageTooLarge(MessageNotSendable):
    """The serialised message is over ``CHANNEL_WORKER["MAX_SEND_BYTES"]``."""


class UnknownChannel(SendError, ValueError):
    """No consumer in the project's ``ASGI_APPLICATION`` reads the channel.

    Raised when ``CHANNEL_WORKER["UNKNOWN_CHANNEL"]`` is ``"error"`` (the default).
    """


class UnknownChannelWarning(UserWarning):
    """Warned instead of raising ``UnknownChannel`` when ``UNKNOWN_CHANNEL`` is ``"warn"``."""


class ChannelAtCapacity(SendError, ChannelFull):  # type: ignore[misc]  # channels is untyped
    """The channel holds as many messages as the layer allows; ``except ChannelFull`` catches it.

    ``channel`` and ``capacity`` say which channel and how many messages it may hold.
    """

    def __init__(self, message: str, *, channel: str, capacity: int) -> None:
        super().__init__(message)
        self.channel = channel
        self.capacity = capacity


# Errors after which Redis is retried rather than a listener restarted: the server is away,
# restarting, still loading its data, or the network dropped.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
)
