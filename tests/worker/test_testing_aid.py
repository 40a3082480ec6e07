"""``drain``: run queued consumers and tasks in-process, through the real worker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from channels.consumer import SyncConsumer

from routing import ChannelNameRouter, ProtocolTypeRouter
from routing.types import Receive, Scope, Send
from tests.worker.send_project import handled, project_settings
from tests.worker.tasks_project.tasks import add, fail, slow
from worker.config import ChannelConfig
from worker.sending.api import asend, send
from worker.tasks.compat import TaskResultStatus
from worker.testing import pytest_plugin
from worker.testing.drain import drain, drain_sync
from worker.testing.pytest_plugin import ChannelWorker

pytestmark = pytest.mark.redis

CHANNEL = "thumbnails-generate"
# What `pytest_plugins = ["worker.testing.pytest_plugin"]` in a project's conftest.py provides.
channel_worker = pytest_plugin.channel_worker


@pytest.fixture
def on_redis(redis_url: str) -> Iterator[str]:
    with project_settings(redis_url):
        yield redis_url


class Sizes(SyncConsumer):  # type: ignore[misc]  # channels is untyped
    seen: list[dict[str, Any]] = []

    def thumbnails_generate(self, message: dict[str, Any]) -> None:
        Sizes.seen.append(message)


async def broken(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    raise RuntimeError(f"cannot resize {message['id']}")


async def test_drain_runs_the_projects_consumer_and_returns_its_counters(on_redis: str) -> None:
    await asend(CHANNEL, {"type": "thumbnails.generate", "id": 1})
    await asyncio.to_thread(send, CHANNEL, {"type": "thumbnails.generate", "id": 2})
    stats = await drain([CHANNEL])
    assert stats.received == 2
    assert stats.completed == 2
    assert sorted(entry["id"] for entry in handled(on_redis)) == [1, 2]
    with redis.Redis.from_url(on_redis) as client:
        assert client.zcard(f"asgi{CHANNEL}") == 0


async def test_drain_runs_a_given_application_with_serialised_messages(on_redis: str) -> None:
    Sizes.seen = []
    application = ProtocolTypeRouter({"channel": ChannelNameRouter({CHANNEL: Sizes.as_asgi()})})
    # A tuple goes through the layer's serializer and comes out a list, as in runworker.
    await asend(CHANNEL, {"type": "thumbnails.generate", "id": 3, "sizes": (64, 128)})
    stats = await drain([CHANNEL], application=application)
    assert stats.completed == 1
    assert Sizes.seen == [
        {"type": "thumbnails.generate", "id": 3, "sizes": [64, 128], "__attempt__": 1}
    ]


def test_drain_sync_runs_a_task_and_its_result_reads_back(on_redis: str) -> None:
    result = add.enqueue(20, 22)
    stats = drain_sync(["tasks.default"])
    assert stats.completed == 1
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42


def test_channel_worker_fixture_drains_tasks(on_redis: str, channel_worker: ChannelWorker) -> None:
    ok = add.enqueue(1, 2)
    bad = fail.enqueue("full")
    stats = channel_worker.drain_sync(["tasks.default"])
    assert (stats.completed, stats.failed) == (1, 1)
    assert add.get_result(ok.id).return_value == 3
    failed = fail.get_result(bad.id)
    assert failed.status == TaskResultStatus.FAILED
    assert "ValueError: boom: full" in failed.errors[0].traceback


async def test_failing_handler_is_counted_and_dead_lettered_at_once(on_redis: str) -> None:
    application = ProtocolTypeRouter({"channel": ChannelNameRouter({CHANNEL: broken})})
    await asend(CHANNEL, {"type": "thumbnails.generate", "id": 9})
    stats = await drain([CHANNEL], application=application)
    assert (stats.failed, stats.dead, stats.retried) == (1, 1, 0)


async def test_drain_waits_for_retries_when_configured(on_redis: str) -> None:
    application = ProtocolTypeRouter({"channel": ChannelNameRouter({CHANNEL: broken})})
    await asend(CHANNEL, {"type": "thumbnails.generate", "id": 9})
    config = ChannelConfig(max_attempts=3, retry_backoff_min_s=0.01, retry_backoff_max_s=0.01)
    stats = await drain([CHANNEL], application=application, config=config)
    assert (stats.failed, stats.retried, stats.dead) == (3, 2, 1)


async def test_drain_times_out_naming_what_is_left(on_redis: str) -> None:
    slow.enqueue(1.0)
    with pytest.raises(
        TimeoutError,
        match=r"drain\(\) timed out after 0\.2 s; still left: 'tasks\.default': 0 queued, "
        r"1 in flight, 0 delayed",
    ):
        await drain(["tasks.default"], timeout_s=0.2)


async def test_drain_refuses_at_most_once_delivery(on_redis: str) -> None:
    with pytest.raises(ValueError, match=r"drain\(\) runs channels at-least-once"):
        await drain([CHANNEL], config=ChannelConfig(delivery="at-most-once"))
