"""Per-channel worker settings: built-in defaults < ``CHANNEL_WORKER`` < flags < per-channel."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.constants import DEFAULT_CONCURRENCY
from worker.errors import ConfigurationError

DELIVERY_MODES = ("at-most-once",)


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """How one channel is consumed."""

    concurrency: int = DEFAULT_CONCURRENCY
    # Messages taken from Redis but not yet started; None means "same as concurrency".
    prefetch: int | None = None
    delivery: str = "at-most-once"

    @property
    def prefetch_limit(self) -> int:
        return self.concurrency if self.prefetch is None else self.prefetch

    def validated(self, channel: str) -> ChannelConfig:
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigurationError(
                f"concurrency for channel {channel!r} is {self.concurrency!r}; "
                "expected an integer >= 1."
            )
        if self.prefetch is not None and (not isinstance(self.prefetch, int) or self.prefetch < 1):
            raise ConfigurationError(
                f"prefetch for channel {channel!r} is {self.prefetch!r}; expected an integer >= 1."
            )
        if self.delivery not in DELIVERY_MODES:
            raise ConfigurationError(
                f"delivery for channel {channel!r} is {self.delivery!r}; "
                f"expected one of {', '.join(map(repr, DELIVERY_MODES))}."
            )
        return self


_FIELDS = {field.name for field in dataclasses.fields(ChannelConfig)}


def _options(source: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(source) - _FIELDS)
    if unknown:
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
    settings = dict(settings or {})
    per_channel = settings.pop("CHANNELS", {}) or {}
    if not isinstance(per_channel, Mapping):
        raise ConfigurationError(
            f"CHANNEL_WORKER['CHANNELS'] is {per_channel!r}; expected a dict of channel names "
            "to option dicts."
        )
    worker_wide = _options(
        {str(key).lower(): value for key, value in settings.items()}, "CHANNEL_WORKER"
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
