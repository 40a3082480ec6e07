"""The app's ASGI routes: the gallery WebSocket, and the worker channels' consumers."""

from __future__ import annotations

from django.urls import path

from example.thumbnails.consumers import DeleteConsumer, GalleryConsumer, GenerateConsumer
from example.thumbnails.messages import DELETE_CHANNEL, GENERATE_CHANNEL
from example.thumbnails.middleware import ConnectionLogMiddleware
from routing import URLRouter
from routing.types import ASGIApp

# A router nested under "ws/" behind its own middleware: the prefix is consumed, the inner
# router matches the rest, and the middleware runs for every route below it.
websocket_urlpatterns = [
    path(
        "ws/",
        ConnectionLogMiddleware(URLRouter([path("gallery/", GalleryConsumer.as_asgi())])),
    ),
]

channel_applications: dict[str, ASGIApp] = {
    GENERATE_CHANNEL: GenerateConsumer.as_asgi(),
    DELETE_CHANNEL: DeleteConsumer.as_asgi(),
}
