"""The project's root application: two worker channels; no task channel, runworker adds those."""

from __future__ import annotations

from channels.routing import ChannelNameRouter, ProtocolTypeRouter

from .consumers import ThumbnailConsumer

application = ProtocolTypeRouter(
    {
        "channel": ChannelNameRouter(
            {
                "thumbnails-generate": ThumbnailConsumer.as_asgi(),
                "thumbnails-delete": ThumbnailConsumer.as_asgi(),
            }
        )
    }
)
