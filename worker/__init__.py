"""A concurrent, at-least-once worker for channels named on a Channels layer.

The public API, importable from here::

    from worker import send, asend, send_on_commit, drain, ChannelLayerBackend

Names load on first use, so ``import worker`` stays cheap and needs no Django settings.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.admin.live import admin_live_path
    from worker.config import ChannelConfig
    from worker.consume.worker import Worker
    from worker.errors import (
        ChannelAtCapacity,
        ConfigurationError,
        InvalidChannelName,
        MessageNotSendable,
        MessageTooLarge,
        PermanentFailure,
        RedisOutOfMemory,
        SendError,
        UnknownChannel,
        UnknownChannelWarning,
        UnknownMessageType,
        UnsupportedLayer,
        WorkerError,
    )
    from worker.sending.api import asend, send, send_on_commit
    from worker.tasks.backend import ChannelLayerBackend
    from worker.tasks.progress import Progress
    from worker.testing.drain import drain, drain_sync
    from worker.transport.dead_letters import DeadLetters

try:
    __version__ = _distribution_version("channel-worker")
except PackageNotFoundError:  # pragma: no cover - running from a source tree never installed
    __version__ = "0+unknown"

# Public name -> the module that defines it.
_EXPORTS = {
    "send": "worker.sending.api",
    "asend": "worker.sending.api",
    "send_on_commit": "worker.sending.api",
    "Worker": "worker.consume.worker",
    "ChannelConfig": "worker.config",
    "ChannelLayerBackend": "worker.tasks.backend",
    "Progress": "worker.tasks.progress",
    "DeadLetters": "worker.transport.dead_letters",
    "drain": "worker.testing.drain",
    "drain_sync": "worker.testing.drain",
    "WorkerError": "worker.errors",
    "ConfigurationError": "worker.errors",
    "UnsupportedLayer": "worker.errors",
    "SendError": "worker.errors",
    "InvalidChannelName": "worker.errors",
    "MessageNotSendable": "worker.errors",
    "MessageTooLarge": "worker.errors",
    "UnknownChannel": "worker.errors",
    "UnknownChannelWarning": "worker.errors",
    "UnknownMessageType": "worker.errors",
    "ChannelAtCapacity": "worker.errors",
    "RedisOutOfMemory": "worker.errors",
    "PermanentFailure": "worker.errors",
    "admin_live_path": "worker.admin.live",
}

__all__ = [
    "ChannelAtCapacity",
    "ChannelConfig",
    "ChannelLayerBackend",
    "ConfigurationError",
    "DeadLetters",
    "InvalidChannelName",
    "MessageNotSendable",
    "MessageTooLarge",
    "PermanentFailure",
    "Progress",
    "RedisOutOfMemory",
    "SendError",
    "UnknownChannel",
    "UnknownChannelWarning",
    "UnknownMessageType",
    "UnsupportedLayer",
    "Worker",
    "WorkerError",
    "__version__",
    "admin_live_path",
    "asend",
    "drain",
    "drain_sync",
    "send",
    "send_on_commit",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'worker' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
