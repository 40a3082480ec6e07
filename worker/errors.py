"""Every error the worker raises, in one tree under ``WorkerError``.

Each subclasses the builtin it has always been caught as (``ValueError``, ``RuntimeError``,
``TimeoutError``), so ``except ValueError`` around ``send()`` keeps working.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass

from channels.exceptions import ChannelFull
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import (
    BusyLoadingError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
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


class PermanentFailure(WorkerError):
    """A handler failure that retrying cannot fix: the message is dead-lettered at once.

    Raise it (or a subclass) from a handler to skip the remaining attempts, for example for a
    message that names a record which no longer exists.
    """


class TaskNotRunnable(PermanentFailure):
    """A task that cannot start: its function does not import, its path names no task, or its
    arguments do not decode. Its result is stored ``FAILED`` with the reason."""


class ScheduleFailed(WorkerError, RuntimeError):
    """A schedule's tick could not be enqueued or sent; its loop restarts and retries it."""


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


class UnknownMessageType(SendError, ValueError):
    """The channel's Channels consumer class has no handler method for the message's ``"type"``.

    Raised, like ``UnknownChannel``, when ``CHANNEL_WORKER["UNKNOWN_CHANNEL"]`` is ``"error"``;
    ``"warn"`` warns with an ``UnknownChannelWarning`` instead.
    """


class ChannelAtCapacity(SendError, ChannelFull):  # type: ignore[misc]  # channels is untyped
    """The channel holds as many messages as the layer allows; ``except ChannelFull`` catches it.

    ``channel`` and ``capacity`` say which channel and how many messages it may hold.
    """

    def __init__(self, message: str, *, channel: str, capacity: int) -> None:
        super().__init__(message)
        self.channel = channel
        self.capacity = capacity


class RedisOutOfMemory(SendError, OutOfMemoryError):
    """Redis refused the send: it is at its ``maxmemory`` limit and evicts nothing to make room.

    The layer's own ``send()`` is refused the same way, with redis-py's ``OutOfMemoryError``,
    which this subclasses (so ``except ResponseError`` catches both). ``host`` is the layer host
    (credentials redacted); ``maxmemory_bytes`` and ``policy`` are the limit and the eviction
    policy when the server tells them (``INFO memory``), else 0 and ``""``.
    """

    def __init__(self, message: str, *, host: str, maxmemory_bytes: int, policy: str) -> None:
        super().__init__(message)
        self.host = host
        self.maxmemory_bytes = maxmemory_bytes
        self.policy = policy


# Errors after which Redis is retried rather than a listener restarted: the server is away,
# restarting, still loading its data, or the network dropped.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
)

# Reply codes of a server that is up but refuses the work for now: it cannot persist (MISCONF),
# is a replica during a failover (READONLY, MASTERDOWN, NOREPLICAS, and UNBLOCKED for a blocking
# command it ended then), runs another client's slow script (BUSY), is full (OOM) or still
# loading its data (LOADING). Each ends by itself.
REFUSAL_CODES = (
    "MISCONF", "READONLY", "MASTERDOWN", "NOREPLICAS", "UNBLOCKED", "BUSY", "OOM", "LOADING",
)  # fmt: skip
# Reply codes of a server that refuses the worker's credentials: only a configuration change
# (the password, the ACL user or its permissions) ends this.
CREDENTIAL_CODES = ("NOAUTH", "WRONGPASS", "NOPERM")

UNREACHABLE = "unreachable"
REFUSING = "refusing"
CREDENTIALS = "credentials"


@dataclass(frozen=True, slots=True)
class RedisFault:
    """What a Redis error says about the server: ``kind`` is ``UNREACHABLE`` (the connection is
    gone or silent), ``REFUSING`` (up, but refusing the work for now) or ``CREDENTIALS`` (the
    worker's credentials or ACL permissions are refused); ``reason`` is one line for logs."""

    kind: str
    reason: str


def redis_fault(error: BaseException) -> RedisFault | None:
    """Classify an error raised by a Redis call; None when it says nothing about the server.

    The one place that decides which Redis errors are an outage to wait out (retried with
    backoff, the task kept alive), which are a configuration error, and which are bugs.
    """
    reason = f"{type(error).__name__}: {error}".strip().rstrip(":")
    code = _reply_code(error)
    if isinstance(error, RedisAuthenticationError | NoPermissionError) or code in CREDENTIAL_CODES:
        return RedisFault(CREDENTIALS, reason)
    if isinstance(error, ReadOnlyError | OutOfMemoryError | BusyLoadingError):
        return RedisFault(REFUSING, reason)
    if code in REFUSAL_CODES:
        return RedisFault(REFUSING, reason)
    if isinstance(error, REDIS_DOWN):
        return RedisFault(UNREACHABLE, reason)
    if isinstance(error, RuntimeError | AttributeError) and _inside_redis_client(error):
        # uvloop ("unable to perform operation on <TCPTransport closed=True>") and asyncio
        # ("'NoneType' object has no attribute 'write'") raise these when redis-py writes to a
        # socket the peer has just reset: a lost connection in another form.
        return RedisFault(UNREACHABLE, f"connection reset ({reason})")
    return None


def _reply_code(error: BaseException) -> str | None:
    """The code an error reply starts with (``MISCONF``, ``BUSY``...), if it is one."""
    if not isinstance(error, ResponseError):
        return None
    text = str(error)
    # redis-py words a pipeline's error "Command # 1 (...) of pipeline caused error: ('BUSY...',)".
    _, marker, reply = text.partition(_PIPELINE_MARKER)
    if marker:
        text = reply.lstrip("('\"")
    words = text.split(maxsplit=1)
    return words[0] if words and words[0].isupper() else None


def _inside_redis_client(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return any(_REDIS_PACKAGE in frame.filename for frame in frames)


_REDIS_PACKAGE = f"{os.sep}redis{os.sep}"
_PIPELINE_MARKER = "of pipeline caused error: "
