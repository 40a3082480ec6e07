"""A consumer that records each scheduled message it handles: its schedule, tick and process."""

from __future__ import annotations

import json
import os
from typing import Any

from channels.consumer import AsyncConsumer
from django.conf import settings
from redis.asyncio import Redis

#: A Redis list of ``{"schedule", "tick", "pid"}`` records, oldest first.
TICKS_KEY = "schedule-test:ticks"


class MaintenanceConsumer(AsyncConsumer):  # type: ignore[misc]  # channels is untyped
    """Handles ``{"type": "sweep.run"}``, as a schedule sends it."""

    async def sweep_run(self, message: dict[str, Any]) -> None:
        url = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
        entry = {
            "schedule": message["__schedule__"],
            "tick": message["__tick__"],
            "pid": os.getpid(),
        }
        async with Redis.from_url(url) as client:
            await client.rpush(TICKS_KEY, json.dumps(entry))
