"""Full-jitter exponential backoff: for reconnecting, restarting and retrying messages."""

from __future__ import annotations

import asyncio
import random

from worker.constants import RECONNECT_BACKOFF_MAX_S, RECONNECT_BACKOFF_MIN_S


def full_jitter_delay_s(failures: int, min_s: float, max_s: float) -> float:
    """The delay after ``failures`` earlier ones: uniform in [min_s, min(max_s, min_s * 2^n)]."""
    ceiling = min(max_s, min_s * 2**failures)
    return random.uniform(min_s, max(min_s, ceiling))


class Backoff:
    """Full-jitter exponential delays between ``min_s`` and ``max_s``."""

    def __init__(
        self, min_s: float = RECONNECT_BACKOFF_MIN_S, max_s: float = RECONNECT_BACKOFF_MAX_S
    ) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.failures = 0

    def next_delay_s(self) -> float:
        delay_s = full_jitter_delay_s(self.failures, self.min_s, self.max_s)
        self.failures += 1
        return delay_s

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay_s())

    def reset(self) -> None:
        self.failures = 0
