"""Fixtures of the worker tests: channel layers on the suite's real redis-server, and the
settings of the tasks-only project."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from channels_redis.core import RedisChannelLayer
from django.test import override_settings
from redis.asyncio import Redis

from tests.worker.tasks_only_project import settings as project
from worker.sending.pools import close_connections

#: Long enough that the layer's own expiry never drops a test's messages.
LAYER_EXPIRY_S = 3600


@pytest.fixture
async def layer(redis_url: str) -> AsyncIterator[RedisChannelLayer]:
    """The layer a Django view sends with; tests also inspect Redis through it."""
    layer = RedisChannelLayer(hosts=[redis_url], capacity=1000, expiry=LAYER_EXPIRY_S)
    yield layer
    await layer.close_pools()


@pytest.fixture
async def worker_layer(redis_url: str) -> AsyncIterator[RedisChannelLayer]:
    """A layer instance of the worker's own, as ``get_channel_layer()`` gives runworker."""
    layer = RedisChannelLayer(hosts=[redis_url], capacity=1000, expiry=LAYER_EXPIRY_S)
    yield layer
    await layer.close_pools()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client on the suite's redis-server, for setting up and inspecting keys."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def tasks_only(redis_url: str) -> Iterator[None]:
    """This process with the three settings of tests/worker/tasks_only_project (the suite's
    own settings have no ``ASGI_APPLICATION``), and its send pools closed afterwards."""
    with override_settings(CHANNEL_LAYERS=project.layers(redis_url), TASKS=project.TASKS):
        try:
            yield
        finally:
            close_connections()
