"""The operations project's root application: one worker channel."""

from __future__ import annotations

from channels.routing import ChannelNameRouter, ProtocolTypeRouter

from .consumers import OPS_CHANNEL, OpsConsumer

application = ProtocolTypeRouter(
    {"channel": ChannelNameRouter({OPS_CHANNEL: OpsConsumer.as_asgi()})}
)
