"""The fault tests' consumer: records each message it handles in Redis and fails on demand.

Messages are ``{"type": "faults.run", "id": ...}`` with optional ``"sleep_s"`` (seconds to
await first), ``"poison": True`` (always raise), ``"fail_unless"`` (raise unless that Redis key
exists, so a test can "fix" the condition and requeue the dead letter) and ``"write_layer"``
(write to the layer's Redis first, so the handler fails while that Redis refuses writes).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from typing import Any

import redis
from channels.consumer import AsyncConsumer
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

CHANNEL = "faults"
MESSAGE_TYPE = "faults.run"
# Lists of JSON entries {"id", "pid", "attempt"}, read by the tests from their own process.
DONE_KEY = "cw-faults:done"
FAILED_KEY = "cw-faults:failed"


@functools.cache
def client(url: str = "") -> redis.Redis:
    # No client-side retries: while Redis is down a handler fails at once and the worker's own
    # retries and leases decide what happens to its message.
    return redis.Redis.from_url(url or settings.REDIS_URL, retry=Retry(NoBackoff(), 0))


def record(key: str, message: dict[str, Any]) -> None:
    entry = {"id": message["id"], "pid": os.getpid(), "attempt": message.get("__attempt__")}
    client(settings.RECORD_REDIS_URL).rpush(key, json.dumps(entry))


class PoisonError(RuntimeError):
    """The message asked to fail."""


class FaultsConsumer(AsyncConsumer):  # type: ignore[misc]  # channels is untyped
    async def faults_run(self, message: dict[str, Any]) -> None:
        sleep_s = float(message.get("sleep_s", 0))
        if sleep_s:
            await asyncio.sleep(sleep_s)
        if message.get("write_layer"):
            client().incr("cw-faults:layer-writes")
        flag = message.get("fail_unless")
        if message.get("poison") or (flag and not client().exists(flag)):
            record(FAILED_KEY, message)
            raise PoisonError(f"poison message {message['id']!r}")
        record(DONE_KEY, message)
