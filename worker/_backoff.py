"""Jittered exponential backoff for reconnecting and restarting."""

from __future__ import annotations

import asyncio
import random

from worker.constants import RECONNECT_BACKOFF_MAX_S, RECONNECT_BACKOFF_MIN_S


class Backoff:
    """Full-jitter exponential delays between ``min_s`` and ``max_s``."""

    def __init__(
        self, min_s: float = RECONNECT_BACKOFF_MIN_S, max_s: float = RECONNECT_BACKOFF_MAX_S
    ) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.failures = 0

    def next_delay_s(self) -> float:
        ceiling = min(self.max_s, self.min_s * 2**self.failures)
        self.failures += 1
        return random.uniform(self.min_s, max(self.min_s, ceiling))

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay_s())

    def reset(self) -> None:
        self.failures = 0
