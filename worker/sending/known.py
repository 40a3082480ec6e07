"""Which channels the project consumes, so ``send("thumbnail", ...)`` fails in the view.

The channels are read from ``ASGI_APPLICATION``'s ``ProtocolTypeRouter({"channel":
ChannelNameRouter({...})})`` (ours or Channels'), once per application path. Task channels
(``tasks.<queue_name>``) are always known: ``runworker`` serves them itself.
"""

from __future__ import annotations

import difflib
import functools
import warnings

from worker.errors import ConfigurationError, UnknownChannel, UnknownChannelWarning
from worker.names import TASK_CHANNEL_PREFIX, is_task_channel
from worker.project import import_string, routed_channels

UNKNOWN_CHANNEL_MODES = ("error", "warn", "off")


def check_known_channel(channel: str) -> None:
    """Raise ``UnknownChannel`` (or warn) when no consumer of the project reads ``channel``."""
    if "!" in channel or is_task_channel(channel):
        # Process-specific channels belong to one consumer instance, not to the router.
        return
    from django.conf import settings

    mode = (getattr(settings, "CHANNEL_WORKER", None) or {}).get("UNKNOWN_CHANNEL", "error")
    if mode not in UNKNOWN_CHANNEL_MODES:
        raise ConfigurationError(
            f"CHANNEL_WORKER['UNKNOWN_CHANNEL'] is {mode!r}; expected one of "
            f"{', '.join(map(repr, UNKNOWN_CHANNEL_MODES))}."
        )
    path = getattr(settings, "ASGI_APPLICATION", None)
    if mode == "off" or not path:
        return
    known = served_channels(path)
    if known is None or channel in known:
        return
    problem = unknown_channel_message(channel, path, known)
    if mode == "error":
        raise UnknownChannel(problem)
    warnings.warn(problem, UnknownChannelWarning, stacklevel=4)


def unknown_channel_message(channel: str, path: str, known: frozenset[str]) -> str:
    names = ", ".join(map(repr, sorted(known))) or "(none)"
    close = difflib.get_close_matches(channel, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"No consumer for channel {channel!r} in ASGI_APPLICATION {path!r}: the message would "
        f"wait unread until it expires; {hint}known channels: {names}, and task channels "
        f"'{TASK_CHANNEL_PREFIX}<queue_name>'. Add the channel to the ChannelNameRouter or fix "
        "the name (CHANNEL_WORKER['UNKNOWN_CHANNEL'] = 'warn' only warns)."
    )


@functools.lru_cache(maxsize=16)
def served_channels(path: str) -> frozenset[str] | None:
    """The channel names the application at ``path`` routes; None when its shape is unknown."""
    try:
        application = import_string(path, "ASGI application")
    except ConfigurationError as error:
        raise ConfigurationError(
            f"{error} send() reads ASGI_APPLICATION to check channel names; fix it or set "
            "CHANNEL_WORKER['UNKNOWN_CHANNEL'] = 'off'."
        ) from error
    return routed_channels(application)
