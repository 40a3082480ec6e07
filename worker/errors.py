"""Worker errors: configuration problems found at start-up."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class WorkerError(Exception):
    """Base class of the worker's own errors."""


class ConfigurationError(WorkerError, ValueError):
    """The worker cannot start with the given settings or options."""


class UnsupportedLayer(ConfigurationError):
    """The configured channel layer cannot be served by ``runworker``."""


class ApplicationSendError(WorkerError, RuntimeError):
    """A worker application called ``send()``, which has no client to reach."""


# Errors after which Redis is retried rather than a listener restarted: the server is away,
# restarting, still loading its data, or the network dropped.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
)
