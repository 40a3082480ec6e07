"""A Channels consumer that records each message it handles in a Redis list."""

from __future__ import annotations

import json
import os
from typing import Any

from channels.consumer import AsyncConsumer
from django.conf import settings
from redis.asyncio import Redis

HANDLED_KEY = "send-test:handled"


class ThumbnailConsumer(AsyncConsumer):  # type: ignore[misc]  # channels is untyped
    """Handles ``{"type": "thumbnails.generate", "id": ...}``."""

    async def thumbnails_generate(self, message: dict[str, Any]) -> None:
        url = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
        async with Redis.from_url(url) as client:
            entry = {"id": message["id"], "pid": os.getpid(), "attempt": message["__attempt__"]}
            await client.rpush(HANDLED_KEY, json.dumps(entry))
