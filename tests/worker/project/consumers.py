"""The test project's consumer: records each message it starts and finishes in Redis lists."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from channels.consumer import AsyncConsumer
from django.conf import settings
from redis.asyncio import Redis

TASKS_CHANNEL = "cw-tasks"
# Lists of JSON entries {"id": ..., "pid": ...}, read by the tests from another process.
STARTED_KEY = "cw-test:started"
DONE_KEY = "cw-test:done"


async def record(key: str, message_id: str) -> None:
    host = dict(settings.REDIS_HOST)
    async with Redis.from_url(host.pop("address"), **host) as client:
        await client.rpush(key, json.dumps({"id": message_id, "pid": os.getpid()}))


class TaskConsumer(AsyncConsumer):  # type: ignore[misc]  # channels is untyped
    """Handles ``{"type": "task.run", "id": ..., "sleep_s": ...}``, slowly on demand."""

    async def task_run(self, message: dict[str, Any]) -> None:
        await record(STARTED_KEY, message["id"])
        await asyncio.sleep(float(message.get("sleep_s", 0)))
        await record(DONE_KEY, message["id"])
