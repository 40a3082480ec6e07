"""Per-channel worker settings: built-in defaults < ``CHANNEL_WORKER`` < flags < per-channel."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.constants import (
    DEFAULT_CONCURRENCY,
    DEFAULT_LEASE_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MESSAGE_TIMEOUT_S,
    DEFAULT_RETRY_BACKOFF_MAX_S,
    DEFAULT_RETRY_BACKOFF_MIN_S,
)
from worker.errors import ConfigurationError

AT_LEAST_ONCE = "at-least-once"
AT_MOST_ONCE = "at-most-once"
DELIVERY_MODES = (AT_LEAST_ONCE, AT_MOST_ONCE)


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """How one channel is consumed."""

    concurrency: int = DEFAULT_CONCURRENCY
    # Messages taken from Redis but not yet started; None means "same as concurrency".
    prefetch: int | None = None
    delivery: str = AT_LEAST_ONCE
    # Attempts before a failing message is dead-lettered; 1 means no retries.
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    # An async handler running longer is cancelled and counted as a failed attempt; None: no limit.
    message_timeout_s: float | None = DEFAULT_MESSAGE_TIMEOUT_S
    # Larger serialised messages are dead-lettered unhandled.
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # At-least-once: how long a lease lasts without a heartbeat before others may redeliver.
    lease_s: float = DEFAULT_LEASE_S
    retry_backoff_min_s: float = DEFAULT_RETRY_BACKOFF_MIN_S
    retry_backoff_max_s: float = DEFAULT_RETRY_BACKOFF_MAX_S
    # Task channels: threads that run sync task functions at once; None means "same as
    # concurrency", so every instance can run its sync task without waiting for a thread.
    task_threads: int | None = None

    @property
    def leased(self) -> bool:
        return self.delivery == AT_LEAST_ONCE

    @property
    def prefetch_limit(self) -> int:
        return self.concurrency if self.prefetch is None else self.prefetch

    @property
    def task_thread_limit(self) -> int:
        return self.concurrency if self.task_threads is None else self.task_threads

    def validated(self, channel: str) -> ChannelConfig:
        if not _is_count(self.concurrency):
            raise ConfigurationError(
                f"concurrency for channel {channel!r} is {self.concurrency!r}; "
                "expected an integer >= 1."
            )
        if self.prefetch is not None and not _is_count(self.prefetch):
            raise ConfigurationError(
                f"prefetch for channel {channel!r} is {self.prefetch!r}; expected an integer >= 1."
            )
        if self.task_threads is not None and not _is_count(self.task_threads):
            raise ConfigurationError(
                f"task_threads for channel {channel!r} is {self.task_threads!r}; expected an "
                "integer >= 1."
            )
        for name in ("max_attempts", "max_message_bytes"):
            value = getattr(self, name)
            if not _is_count(value):
                raise ConfigurationError(
                    f"{name} for channel {channel!r} is {value!r}; expected an integer >= 1."
                )
        for name in ("lease_s", "retry_backoff_min_s", "retry_backoff_max_s", "message_timeout_s"):
            value = getattr(self, name)
            if value is None and name == "message_timeout_s":
                continue
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(
                    f"{name} for channel {channel!r} is {value!r}; expected a number > 0."
                )
        if self.delivery not in DELIVERY_MODES:
            raise ConfigurationError(
                f"delivery for channel {channel!r} is {self.delivery!r}; "
                f"expected one of {', '.join(map(repr, DELIVERY_MODES))}."
            )
        return self


_FIELDS = {field.name for field in dataclasses.fields(ChannelConfig)}

#: ``CHANNEL_WORKER`` keys that apply to the whole worker rather than to each channel.
WORKER_WIDE_SETTINGS = {
    "DEAD_LETTER_MAX_COUNT": "dead-letter store bound per channel (default 10000)",
    "DEAD_LETTER_MAX_AGE_S": "dead letters older than this are trimmed (default 7 days)",
    "EXPIRY_WARNING_S": "warn at start-up when the layer expiry is shorter (default 600)",
    "HEALTH_INTERVAL_S": "how often the health record is refreshed",
    "MAX_SEND_BYTES": "send() refuses larger serialised messages (default 1 MiB)",
    "METRICS_MAX_TYPES": "distinct message types per channel with a metrics label of their own; "
    "later ones count as '(other)' (default 100)",
    "UNKNOWN_CHANNEL": "send() to a channel ASGI_APPLICATION does not consume: "
    "'error' (default), 'warn' or 'off'",
    "SCHEDULES": "periodic tasks and messages, by name (see the Schedules page)",
    "SCHEDULE_LEASE_S": "how long a worker's claim on a schedule's tick lasts before another "
    "worker may fire it (default 10)",
}


def worker_setting(settings: Mapping[str, Any] | None, name: str, default: float) -> float:
    """A worker-wide ``CHANNEL_WORKER`` number, checked."""
    value = (settings or {}).get(name, default)
    if not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(
            f"CHANNEL_WORKER[{name!r}] is {value!r}; expected a number > 0 "
            f"({WORKER_WIDE_SETTINGS[name]})."
        )
    return float(value)


def worker_count_setting(settings: Mapping[str, Any] | None, name: str, default: int) -> int:
    """A worker-wide ``CHANNEL_WORKER`` count, checked."""
    value = (settings or {}).get(name, default)
    if not _is_count(value):
        raise ConfigurationError(
            f"CHANNEL_WORKER[{name!r}] is {value!r}; expected an integer >= 1 "
            f"({WORKER_WIDE_SETTINGS[name]})."
        )
    count: int = value
    return count


def _is_count(value: object) -> bool:
    # bool is an int subclass; `concurrency: True` is a mistake, not 1.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _options(source: Mapping[str, Any], where: str, *, upper_case: bool = False) -> dict[str, Any]:
    unknown = sorted(set(source) - _FIELDS)
    if unknown:
        if upper_case:
            unknown = [name.upper() for name in unknown]
            known = sorted(name.upper() for name in _FIELDS)
            raise ConfigurationError(
                f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; known keys: "
                f"'CHANNELS', {', '.join(map(repr, sorted(WORKER_WIDE_SETTINGS) + known))}."
            )
        raise ConfigurationError(
            f"{where} has unknown option(s) {', '.join(map(repr, unknown))}; "
            f"known options: {', '.join(map(repr, sorted(_FIELDS)))}."
        )
    return dict(source)


def channel_configs(
    channels: list[str],
    flags: Mapping[str, Any],
    settings: Mapping[str, Any] | None,
) -> dict[str, ChannelConfig]:
    """Resolve each channel's settings.

    Precedence, lowest first: built-in defaults, worker-wide keys of ``CHANNEL_WORKER`` (upper
    case option names, e.g. ``{"CONCURRENCY": 20}``), command-line flags, then the channel's own
    entry in ``CHANNEL_WORKER["CHANNELS"]`` (lower case, e.g. ``{"concurrency": 4}``).
    """
    settings = {
        key: value for key, value in (settings or {}).items() if key not in WORKER_WIDE_SETTINGS
    }
    per_channel = settings.pop("CHANNELS", {}) or {}
    if not isinstance(per_channel, Mapping):
        raise ConfigurationError(
            f"CHANNEL_WORKER['CHANNELS'] is {per_channel!r}; expected a dict of channel names "
            "to option dicts."
        )
    worker_wide = _options(
        {str(key).lower(): value for key, value in settings.items()},
        "CHANNEL_WORKER",
        upper_case=True,
    )
    given_flags = {key: value for key, value in flags.items() if value is not None}
    resolved = {}
    for channel in channels:
        own = per_channel.get(channel, {})
        options = {
            **worker_wide,
            **_options(given_flags, "command line"),
            **_options(own, f"CHANNEL_WORKER['CHANNELS'][{channel!r}]"),
        }
        resolved[channel] = ChannelConfig(**options).validated(channel)
    return resolved
