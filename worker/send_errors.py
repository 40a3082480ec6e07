"""The send errors' earlier import path; they live in ``worker.errors`` with every other error."""

from worker.errors import (
    ChannelAtCapacity,
    InvalidChannelName,
    MessageNotSendable,
    MessageTooLarge,
    SendError,
    UnknownChannel,
    UnknownChannelWarning,
)

__all__ = [
    "ChannelAtCapacity",
    "InvalidChannelName",
    "MessageNotSendable",
    "MessageTooLarge",
    "SendError",
    "UnknownChannel",
    "UnknownChannelWarning",
]
