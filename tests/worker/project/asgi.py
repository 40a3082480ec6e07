"""The test project's root application: one worker channel, routed the Channels way."""

from __future__ import annotations

from channels.routing import ChannelNameRouter, ProtocolTypeRouter

from .consumers import TASKS_CHANNEL, TaskConsumer

application = ProtocolTypeRouter(
    {"channel": ChannelNameRouter({TASKS_CHANNEL: TaskConsumer.as_asgi()})}
)
