"""A consumer whose handler raises ends at once, whatever its own channel-layer receive is doing.

Channels' ``AsyncConsumer`` cancels its own layer receive once when a handler raises. On Python
3.11 redis-py's ``asyncio.wait_for`` around a socket write swallows a cancel that lands just as
the write completes, and the receive went on blocking in Redis: the slot stayed busy and
``drain()`` timed out with the failed message still in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from channels.consumer import AsyncConsumer

from routing import ChannelNameRouter, ProtocolTypeRouter
from tests.worker.send_project import project_settings
from worker.config import ChannelConfig
from worker.sending.api import asend
from worker.testing.drain import drain

pytestmark = pytest.mark.redis

CHANNEL = "thumbnails-generate"
#: Loop iterations a handler waits before raising: together they cover the moment its
#: consumer's own layer receive is writing its blocking pop to Redis.
YIELDS_BEFORE_RAISING = range(8)


@pytest.fixture
def on_redis(redis_url: str) -> Iterator[str]:
    with project_settings(redis_url):
        yield redis_url


class FailsAfterYields(AsyncConsumer):  # type: ignore[misc]  # channels is untyped
    async def thumbnails_generate(self, message: dict[str, Any]) -> None:
        for _ in range(message["yields"]):
            await asyncio.sleep(0)
        raise RuntimeError(f"cannot resize after {message['yields']} yields")


async def test_failing_async_consumer_with_a_redis_layer_is_drained_at_once(on_redis: str) -> None:
    application = ProtocolTypeRouter(
        {"channel": ChannelNameRouter({CHANNEL: FailsAfterYields.as_asgi()})}
    )
    for yields in YIELDS_BEFORE_RAISING:
        await asend(CHANNEL, {"type": "thumbnails.generate", "yields": yields})
    # One slot, so each message starts a fresh consumer with a fresh layer receive.
    config = ChannelConfig(max_attempts=1, concurrency=1)
    started = time.monotonic()
    stats = await drain([CHANNEL], application=application, config=config, timeout_s=4.0)
    assert (stats.failed, stats.dead) == (len(YIELDS_BEFORE_RAISING),) * 2
    # Each failure is settled when the handler raises, not after the layer's 5 s blocking pop.
    assert time.monotonic() - started < 2.5
