"""The ``django.tasks`` backend: enqueueing, the task consumer, results, task channels, progress.

``TASKS = {"default": {"BACKEND": "worker.tasks.ChannelLayerBackend"}}`` names the backend
through this package, which loads it on first use so that the task channel rules stay importable
without ``django.tasks``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.tasks.backend import ChannelLayerBackend

__all__ = ["ChannelLayerBackend"]


def __getattr__(name: str) -> Any:
    if name == "ChannelLayerBackend":
        from worker.tasks.backend import ChannelLayerBackend

        return ChannelLayerBackend
    raise AttributeError(f"module 'worker.tasks' has no attribute {name!r}")
