"""The schedule tests' root application: the Tasks tests' channels and ``maintenance``."""

from __future__ import annotations

from channels.routing import ChannelNameRouter, ProtocolTypeRouter

from tests.worker.tasks_project.consumers import ThumbnailConsumer

from .consumers import MaintenanceConsumer

application = ProtocolTypeRouter(
    {
        "channel": ChannelNameRouter(
            {
                "maintenance": MaintenanceConsumer.as_asgi(),
                "thumbnails-generate": ThumbnailConsumer.as_asgi(),
            }
        )
    }
)
