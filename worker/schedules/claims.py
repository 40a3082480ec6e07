"""A schedule's state and tick claims in Redis, on the layer's first host.

A tick is claimed under a lease before it is sent and marked fired after, in one script each
(``transport/lua/schedule_claim.lua``, ``schedule_fired.lua``), so of all the workers and
processes that reach a tick, one sends it; and a worker that dies between claim and send
leaves a lease that another worker takes over when it runs out.

Each tick is a key of its own that expires after ``tick_lifetime_s``, so nothing is left to trim
when every worker is gone. With ``every_s`` at least 1 s a schedule has at most
``MIN_TICK_LIFETIME_S`` such keys at a time (with the default lease), a daily one at most one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.transport.keys import schedule_state_key, schedule_tick_key
from worker.transport.scripts import SCHEDULE_CLAIM, SCHEDULE_FIRED, run

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from worker.schedules.definitions import Schedule

#: Every schedule's state and claims live on the layer's first host, not on one picked by a hash
#: of the name: channels-redis's hash depends on the number of hosts, so adding a host would move
#: schedules, and workers with the old and the new host list would claim a tick in two places.
SCHEDULE_HOST_INDEX = 0

CLAIMED = "claimed"
HELD = "held"
FIRED = "fired"
#: The outcome recorded for a tick that the ``skip`` policy dropped.
SKIPPED = "skipped"
#: A schedule's state outlives its last run by this much at least (or three periods).
MIN_STATE_LIFETIME_S = 7 * 24 * 3600
#: A tick's claim or fired mark is kept this long at least (or three leases).
MIN_TICK_LIFETIME_S = 600


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to a claim: ``claimed``, ``held`` by another worker, or ``fired``."""

    verdict: str
    holder: str


class TickClaims:
    """The Redis side of one schedule on its host: register, claim, settle, read state."""

    def __init__(
        self, client: Redis, prefix: str, schedule: Schedule, lease_s: float, period_s: float
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.schedule = schedule
        self.lease_s = lease_s
        self.state_key = schedule_state_key(prefix, schedule.name, schedule.digest)
        self.state_lifetime_s = math.ceil(max(MIN_STATE_LIFETIME_S, 3 * period_s))
        self.tick_lifetime_s = math.ceil(max(MIN_TICK_LIFETIME_S, 3 * lease_s))

    def _tick_key(self, tick_s: float) -> str:
        name, digest = self.schedule.name, self.schedule.digest
        return schedule_tick_key(self.prefix, name, digest, round(tick_s * 1000))

    async def register(self, now_s: float) -> None:
        """Note when this definition was first served: ticks before that were never missed."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.state_key, "first_seen", repr(now_s))
            pipe.expire(self.state_key, self.state_lifetime_s)
            await pipe.execute()

    async def state(self) -> dict[str, str]:
        raw = await self.client.hgetall(self.state_key)
        return {_text(key): _text(value) for key, value in raw.items()}

    async def claim(self, tick_s: float, worker_id: str, now_s: float) -> Claim:
        keys = [self._tick_key(tick_s), self.state_key]
        args = [worker_id, repr(now_s), repr(self.lease_s), self.tick_lifetime_s]
        verdict, holder = await run(self.client, SCHEDULE_CLAIM, keys, args)
        return Claim(_text(verdict), _text(holder))

    async def settle(
        self,
        tick_s: float,
        worker_id: str,
        now_s: float,
        outcome: str,
        result_id: str = "",
        *,
        failed: bool = False,
    ) -> bool:
        """Mark a claimed tick fired with its outcome, or give the claim up when ``failed``.

        False when the claim was no longer this worker's (its lease ran out and another took
        over), so nothing was recorded.
        """
        keys = [self._tick_key(tick_s), self.state_key]
        args = [
            worker_id, repr(tick_s), repr(now_s), outcome, result_id, self.tick_lifetime_s,
            self.state_lifetime_s, "failed" if failed else "fired",
        ]  # fmt: skip
        return bool(await run(self.client, SCHEDULE_FIRED, keys, args))

    async def record_manual(self, now_s: float, by: str, outcome: str, result_id: str) -> None:
        """Record a run triggered by hand; it claims no tick, so the schedule's own go on."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.state_key,
                mapping={
                    "last_run_at": repr(now_s),
                    "last_worker": by,
                    "last_outcome": outcome,
                    "last_result_id": result_id,
                },
            )
            pipe.expire(self.state_key, self.state_lifetime_s)
            await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
