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
    from worker.config import ChannelConfig
    from worker.dead_letters import DeadLetters
    from worker.errors import (
        ChannelAtCapacity,
        ConfigurationError,
        InvalidChannelName,
        MessageNotSendable,
        MessageTooLarge,
        SendError,
        UnknownChannel,
        UnknownChannelWarning,
        UnsupportedLayer,
        WorkerError,
    )
    from worker.progress import Progress
    from worker.send import asend, send, send_on_commit
    from worker.tasks import ChannelLayerBackend
    from worker.testing import drain, drain_sync
    from worker.worker import Worker

try:
    __version__ = _distribution_version("channel-worker")
except PackageNotFoundError:  # pragma: no cover - running from a source tree never installed
    __version__ = "0+unknown"

# Public name -> the module that defines it.
_EXPORTS = {
    "send": "worker.send",
    "asend": "worker.send",
    "send_on_commit": "worker.send",
    "Worker": "worker.worker",
    "ChannelConfig": "worker.config",
    "ChannelLayerBackend": "worker.tasks",
    "Progress": "worker.progress",
    "DeadLetters": "worker.dead_letters",
    "drain": "worker.testing",
    "drain_sync": "worker.testing",
    "WorkerError": "worker.errors",
    "ConfigurationError": "worker.errors",
    "UnsupportedLayer": "worker.errors",
    "SendError": "worker.send_errors",
    "InvalidChannelName": "worker.send_errors",
    "MessageNotSendable": "worker.send_errors",
    "MessageTooLarge": "worker.send_errors",
    "UnknownChannel": "worker.send_errors",
    "UnknownChannelWarning": "worker.send_errors",
    "ChannelAtCapacity": "worker.send_errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'worker' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
