"""A consumer that records the ids it handled in Redis, sleeps or fails on demand."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from channels.consumer import AsyncConsumer
from django.conf import settings
from redis.asyncio import Redis

OPS_CHANNEL = "ops-jobs"
# A list of JSON entries {"id": ..., "pid": ...}, read by the tests from another process.
HANDLED_KEY = "ops-test:handled"


class OpsConsumer(AsyncConsumer):  # type: ignore[misc]  # channels is untyped
    """``ops.run`` ``{"id": ..., "sleep_s": ...}`` succeeds; ``ops.fail`` always raises."""

    async def ops_run(self, message: dict[str, Any]) -> None:
        await asyncio.sleep(float(message.get("sleep_s", 0)))
        async with Redis.from_url(settings.REDIS_URL) as client:
            await client.rpush(HANDLED_KEY, json.dumps({"id": message["id"], "pid": os.getpid()}))

    async def ops_fail(self, message: dict[str, Any]) -> None:
        raise RuntimeError(f"message {message['id']!r} fails on demand")
