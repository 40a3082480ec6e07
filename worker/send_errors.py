"""What ``send()`` refuses, and why: bad names, bad messages, unknown and full channels."""

from __future__ import annotations

from channels.exceptions import ChannelFull

from worker.errors import WorkerError


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
