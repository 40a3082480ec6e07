"""The ``channel_worker`` fixture keeps a test's channels away from a development worker.

A ``runworker`` left running on the development Redis consumes the same channels as the tests;
the fixture gives the test's layers a prefix of the session's own, so ``drain()`` gets every
message the test sent and the development worker gets none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

from tests.worker.process_helpers import WorkerProcess, wait_until
from tests.worker.send_project import handled, project_settings, start_runworker
from worker.sending.api import send
from worker.testing import pytest_plugin
from worker.testing.pytest_plugin import ChannelWorker

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

CHANNEL = "thumbnails-generate"
channel_worker = pytest_plugin.channel_worker


@pytest.fixture
def development_worker(redis_url: str) -> Iterator[WorkerProcess]:
    """``runworker`` on the same Redis, settings and channel as the test, as a developer runs."""
    process = start_runworker(redis_url, CHANNEL)
    yield process
    process.close()


@pytest.fixture
def on_redis(redis_url: str) -> Iterator[str]:
    with project_settings(redis_url):
        yield redis_url


def development_send(redis_url: str, message: dict[str, Any]) -> None:
    """Send as the development project does: the layer as configured, unprefixed."""
    layer = RedisChannelLayer(hosts=[redis_url], expiry=3600)
    async_to_sync(layer.send)(CHANNEL, message)
    async_to_sync(layer.close_pools)()


def handled_ids(redis_url: str, pid: int) -> list[int]:
    return [entry["id"] for entry in handled(redis_url) if entry["pid"] == pid]


def test_a_development_worker_on_the_same_redis_takes_none_of_the_tests_messages(
    development_worker: WorkerProcess, on_redis: str, channel_worker: ChannelWorker
) -> None:
    dev_pid = development_worker.pid
    development_send(on_redis, {"type": "thumbnails.generate", "id": 100})
    wait_until(lambda: handled_ids(on_redis, dev_pid) == [100], "dev", log=development_worker)

    send(CHANNEL, {"type": "thumbnails.generate", "id": 1})
    # Queued behind the test's message on a shared channel: once the development worker has
    # handled it, it would have taken the test's message first.
    development_send(on_redis, {"type": "thumbnails.generate", "id": 101})
    wait_until(lambda: 101 in handled_ids(on_redis, dev_pid), "marker", log=development_worker)

    stats = channel_worker.drain_sync([CHANNEL])
    assert stats.completed == 1
    assert handled_ids(on_redis, os.getpid()) == [1]
    assert handled_ids(on_redis, dev_pid) == [100, 101]


def test_the_fixture_names_the_prefix_every_layer_user_sees(
    on_redis: str, channel_worker: ChannelWorker
) -> None:
    prefix = channel_worker.prefixes["default"]
    assert prefix.startswith("asgi-test-")
    assert get_channel_layer().prefix == prefix
