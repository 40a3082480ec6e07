"""The example's root application: Django for http, WebSockets (the gallery, the admin's live
feed), the worker channels.

Served by ``uvicorn example.asgi:application``; ``runworker`` reads its ``"channel"`` entry.
"""

from __future__ import annotations

import os

import django
from django.apps import apps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
if not apps.ready:
    django.setup(set_prefix=False)

# Imported once Django is set up: the consumers import models.
from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator

from example.thumbnails.routing import channel_applications, websocket_urlpatterns
from routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter
from worker import admin_live_path

application = ProtocolTypeRouter(
    {
        # No "http" entry: it defaults to Django's own ASGI application.
        "websocket": AllowedHostsOriginValidator(
            # admin_live_path: the admin's worker pages update live over it (staff only).
            AuthMiddlewareStack(URLRouter([admin_live_path, *websocket_urlpatterns]))
        ),
        "channel": ChannelNameRouter(channel_applications),
    }
)
