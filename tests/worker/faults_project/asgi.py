"""The fault tests' root application: one worker channel."""

from __future__ import annotations

from routing import ChannelNameRouter, ProtocolTypeRouter

from .consumers import CHANNEL, FaultsConsumer

application = ProtocolTypeRouter(
    {"channel": ChannelNameRouter({CHANNEL: FaultsConsumer.as_asgi()})}
)
