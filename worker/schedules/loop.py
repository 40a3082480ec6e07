"""The loop inside ``runworker`` that fires one schedule: wait for each tick, claim it, send it.

Every worker that serves a schedule's channel runs its loop; the claim makes one of them fire
each tick. A tick is sent at least once and, unless a worker dies in the instant between its
send and the mark that it fired, exactly once:

- a worker that dies after claiming and before sending leaves a lease; the others wait on it
  and the first to see it run out (``lease_s``) fires the tick;
- a send that fails gives the claim up and counts as a failure of the loop, which the worker
  logs, reports as unhealthy and restarts with backoff; the tick is then retried while it is
  recent, or treated as missed;
- an outage of the schedule's Redis host (down, or refusing writes after a failover) is waited
  out with backoff and logged once through the worker's ``RedisHosts``; a tick sent before the
  outage is marked fired once the host answers, never sent again.

Ticks missed while no worker ran (or the loop was stalled for longer than a lease) follow the
schedule's ``missed`` policy: ``skip`` records the latest of them as skipped, ``run_once`` fires
the latest of them once. Never more than one: no burst of catch-up runs.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from worker.backoff import Backoff
from worker.errors import UNREACHABLE, ScheduleFailed, redis_fault
from worker.ops.metrics import NullMetrics
from worker.schedules.claims import FIRED, HELD, SCHEDULE_HOST_INDEX, SKIPPED, TickClaims
from worker.schedules.clock import Clock, SystemClock
from worker.schedules.definitions import RUN_ONCE
from worker.schedules.fire import Fired, fire
from worker.schedules.ticks import fire_at, latest_tick, next_tick
from worker.transport.layer import with_read_timeout

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis

    from worker.consume.outage import RedisHosts
    from worker.schedules.definitions import Schedule

logger = logging.getLogger(__name__)

#: How long a claimed tick is its worker's alone; after that another worker may fire it.
DEFAULT_CLAIM_LEASE_S = 10.0
# A worker that stops while a tick is being sent waits this long for the send and its mark.
_FINISH_ON_STOP_S = 0.5
# Redis calls of the loop give up after this long, so a stalled host is a failure, not a hang.
_SOCKET_TIMEOUT_S = 5.0


class ScheduleLoop:
    """Fire ``schedule`` from one worker: a long-lived task for the ``Worker`` to supervise.

    ::

        loop = ScheduleLoop(schedule, layer, worker.worker_id)
        worker.add_companion(loop)
    """

    def __init__(
        self,
        schedule: Schedule,
        layer: RedisChannelLayer,
        worker_id: str,
        *,
        clock: Clock | None = None,
        metrics: NullMetrics | None = None,
        lease_s: float = DEFAULT_CLAIM_LEASE_S,
        send: Callable[[Schedule, float], Awaitable[Fired]] = fire,
        hosts: RedisHosts | None = None,
    ) -> None:
        self.schedule = schedule
        self.layer = layer
        self.worker_id = worker_id
        self.clock = clock or SystemClock()
        self.metrics = metrics or NullMetrics()
        self.lease_s = lease_s
        self.send = send
        #: The worker's record of its Redis hosts: an outage of the schedule's host is logged
        #: there once, with the worker's other tasks, and waited out here. Without it, every
        #: Redis error ends ``run()``.
        self.hosts = hosts
        self.name = f"Schedule {schedule.name!r}"
        self._problem: str | None = None
        self._host_index = SCHEDULE_HOST_INDEX
        self._backoff = Backoff()
        # A tick this worker sent and could not mark fired (Redis refused the mark): marked
        # before anything else, never sent again.
        self._unsettled: tuple[float, Fired] | None = None

    def problem(self) -> str | None:
        """Why this schedule is not being fired now, or None while its loop is well."""
        return self._problem

    async def run(self) -> None:
        """Fire each tick until cancelled. A Redis outage of the schedule's host is waited out
        with backoff; any other failure is noted for health, then raised."""
        from channels_redis.utils import create_pool
        from redis.asyncio import Redis

        host = with_read_timeout(self.layer.hosts[self._host_index], _SOCKET_TIMEOUT_S)
        client: Redis = Redis.from_pool(create_pool(host))
        try:
            while True:
                try:
                    await self._run(self._claims(client))
                except Exception as error:
                    if not self._outage(error):
                        self._problem = self._problem_of(error)
                        raise
                    # ``hosts`` tells health about the outage, and forgets it once the host
                    # answers any of the worker's tasks, while this loop may still be waiting.
                    self._problem = None
                    await self._backoff.wait()
        finally:
            await client.aclose()

    def _outage(self, error: Exception) -> bool:
        """Whether ``error`` is the schedule's Redis host failing, noted in ``hosts``."""
        if self.hosts is None or isinstance(error, ScheduleFailed):
            return False
        return self.hosts.failed(self._host_index, error, f"schedule {self.schedule.name!r}")

    def _answered(self) -> None:
        self._backoff.reset()
        if self.hosts is not None:
            self.hosts.answered(self._host_index, f"schedule {self.schedule.name!r}")

    def _problem_of(self, error: Exception) -> str | None:
        """What health says about a failure: None for an unreachable Redis, which the loop
        waits out like the worker's listeners do (a restarted worker would not fix it)."""
        cause = error.__cause__ if isinstance(error, ScheduleFailed) else error
        fault = redis_fault(cause) if cause is not None else None
        if fault is not None and fault.kind == UNREACHABLE:
            return None
        if isinstance(error, ScheduleFailed):
            return str(error)
        reason = fault.reason if fault is not None else f"{type(error).__name__}: {error}"
        return f"Schedule {self.schedule.name!r} is not firing: {reason}"

    def _claims(self, client: Redis) -> TickClaims:
        now_s = self.clock.now()
        first = next_tick(self.schedule, now_s)
        period_s = next_tick(self.schedule, first) - first
        return TickClaims(client, self.layer.prefix, self.schedule, self.lease_s, period_s)

    async def _run(self, claims: TickClaims) -> None:
        await claims.register(self.clock.now())
        self._answered()
        await self._settle_unsettled(claims)
        cursor_s = await self._resume(claims)
        while True:
            tick_s = next_tick(self.schedule, cursor_s)
            await self.clock.sleep_until(fire_at(self.schedule, tick_s))
            if self.clock.now() - fire_at(self.schedule, tick_s) > self.lease_s:
                # Stalled past the tick (a suspended process, a clock set forward): the ticks
                # passed meanwhile are missed ticks, with the schedule's policy.
                cursor_s = await self._resume(claims)
                continue
            await self._tick(claims, tick_s)
            cursor_s = tick_s

    async def _resume(self, claims: TickClaims) -> float:
        """Apply the missed-ticks policy to the latest past tick; the time to go on from."""
        now_s = self.clock.now()
        latest_s = latest_tick(self.schedule, now_s)
        state = await claims.state()
        self._problem = None
        last_s = float(state.get("last_tick", "-inf"))
        first_seen_s = float(state.get("first_seen", repr(now_s)))
        if latest_s <= last_s or latest_s < first_seen_s:
            return latest_s
        if now_s - fire_at(self.schedule, latest_s) <= self.lease_s:
            # Recent enough to be this tick, not a missed one: fire it now.
            await self._tick(claims, latest_s)
            return latest_s
        await self._tick(claims, latest_s, skip=self.schedule.missed != RUN_ONCE)
        return latest_s

    async def _tick(self, claims: TickClaims, tick_s: float, *, skip: bool = False) -> None:
        """Claim ``tick_s``, waiting out another worker's lease, then fire or skip it."""
        while True:
            now_s = self.clock.now()
            claim = await claims.claim(tick_s, self.worker_id, now_s)
            self._problem = None
            if claim.verdict == FIRED:
                return
            if claim.verdict != HELD:
                break
            # Another worker holds it: wait for its mark, or for its lease to run out.
            await self.clock.sleep_until(now_s + self.lease_s / 5)
        if skip:
            await claims.settle(tick_s, self.worker_id, self.clock.now(), SKIPPED)
            self.metrics.schedule_skipped(self.schedule.name)
            logger.warning(
                "Schedule %r missed its tick at %s (no worker fired it in time: none ran, or "
                "Redis was out); skipped (missed='skip'; 'run_once' would run it once now)",
                self.schedule.name,
                _shown(tick_s),
            )
            return
        await self._fire_to_the_end(claims, tick_s)

    async def _fire_to_the_end(self, claims: TickClaims, tick_s: float) -> None:
        """Fire, and when cancelled meanwhile (the worker stops), finish first.

        A send cut short may still reach Redis (``asend()`` runs on the send loop's thread) and
        would then be fired again by another worker once the claim's lease runs out; letting
        the send and its mark finish, for up to ``_FINISH_ON_STOP_S``, avoids that.
        """
        firing = asyncio.ensure_future(self._fire(claims, tick_s))
        try:
            await asyncio.shield(firing)
        except asyncio.CancelledError:
            await asyncio.wait({firing}, timeout=_FINISH_ON_STOP_S)
            if firing.done() and not firing.cancelled():
                firing.exception()  # retrieved: the stop is what matters now
            raise

    async def _fire(self, claims: TickClaims, tick_s: float) -> None:
        try:
            fired = await self.send(self.schedule, tick_s)
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            self.metrics.schedule_failed(self.schedule.name)
            await self._give_up(claims, tick_s, reason)
            raise ScheduleFailed(
                f"Schedule {self.schedule.name!r} could not fire its tick at {_shown(tick_s)} "
                f"on channel {self.schedule.channel!r}: {reason}"
            ) from error
        now_s = self.clock.now()
        self.metrics.schedule_fired(self.schedule.name, now_s - fire_at(self.schedule, tick_s))
        logger.info(
            "Schedule %r fired its tick at %s: %s%s",
            self.schedule.name,
            _shown(tick_s),
            fired.outcome,
            f" (result {fired.result_id})" if fired.result_id else "",
        )
        self._unsettled = (tick_s, fired)
        await self._settle_unsettled(claims)

    async def _settle_unsettled(self, claims: TickClaims) -> None:
        """Mark the tick this worker sent fired; kept for the next try if Redis refuses."""
        if self._unsettled is None:
            return
        tick_s, fired = self._unsettled
        now_s = self.clock.now()
        settled = await claims.settle(tick_s, self.worker_id, now_s, fired.outcome, fired.result_id)
        self._unsettled = None
        if not settled:
            logger.warning(
                "Schedule %r: its tick at %s was sent but marked fired only after the claim's "
                "lease (SCHEDULE_LEASE_S = %g s) ran out, so another worker may have fired it too",
                self.schedule.name,
                _shown(tick_s),
                self.lease_s,
            )

    async def _give_up(self, claims: TickClaims, tick_s: float, reason: str) -> None:
        """Free a tick whose send failed, so another worker may try it at once."""
        try:
            await claims.settle(tick_s, self.worker_id, self.clock.now(), reason, failed=True)
        except Exception as error:
            # Redis is what failed, most likely: the claim then runs out after its lease.
            logger.debug("Could not give up the claim of %r: %s", self.schedule.name, error)


def _shown(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")
