"""What each layer host's Redis refuses now, shared by every task of a worker that talks to it.

Every long-lived task (pollers, acknowledgements, maintenance, arrival watches, the health
reporter) reports here a Redis error it waits out and a call that succeeded. The worker then
logs an outage once per host, with a reminder every ``STILL_DOWN_EVERY_S`` while it lasts and
one line when it ends, however many tasks noticed it, and health says what Redis refuses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.errors import CREDENTIALS, REFUSING, UNREACHABLE, RedisFault, redis_fault

if TYPE_CHECKING:
    from worker.ops.metrics import NullMetrics
    from worker.ops.stats import Stats

logger = logging.getLogger(__name__)

#: While an outage lasts, one line says so this often.
STILL_DOWN_EVERY_S = 30.0

_WHAT = {
    UNREACHABLE: "unreachable",
    REFUSING: "refuses the worker's commands",
    CREDENTIALS: "refused the worker's credentials",
}
_CREDENTIALS_FIX = (
    "set the right password (and username, for an ACL user with the commands and keys the "
    "worker needs) in the layer's host, e.g. redis://:PASSWORD@host:6379/0 in "
    "CHANNEL_LAYERS[...]['CONFIG']['hosts']"
)


@dataclass(slots=True)
class _Outage:
    fault: RedisFault
    since: float
    logged_at: float
    #: False for a brief outage soon after a logged one: its start and end stay quiet.
    logged: bool = True


class RedisHosts:
    """The state of each layer host as the worker's own calls found it.

    ``hosts`` describes each host for people, credentials redacted (``describe_host``).
    """

    def __init__(
        self,
        hosts: Sequence[str],
        stats: Stats,
        metrics: NullMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hosts = list(hosts)
        self.stats = stats
        self.metrics = metrics
        self.clock = clock
        self._outages: dict[int, _Outage] = {}
        # Per host: when an outage start was last logged, and quiet outages since then. A
        # connection that drops every second is one warning per STILL_DOWN_EVERY_S, not two
        # lines a second.
        self._last_logged: dict[int, tuple[str, float]] = {}
        self._quiet: dict[int, int] = {}
        self._answering = asyncio.Event()
        self._answering.set()

    def failed(self, host_index: int, error: BaseException, context: str) -> bool:
        """Note a failed call to a host; False when ``error`` is not about Redis (re-raise it).

        ``context`` names who noticed, e.g. ``channel 'thumbnails'``.
        """
        fault = redis_fault(error)
        if fault is None:
            return False
        self.stats.redis_errors += 1
        now = self.clock()
        outage = self._outages.get(host_index)
        if outage is None or outage.fault.kind != fault.kind:
            since = outage.since if outage is not None else now
            kind, logged_at = self._last_logged.get(host_index, ("", -STILL_DOWN_EVERY_S))
            loud = kind != fault.kind or now - logged_at >= STILL_DOWN_EVERY_S
            self._outages[host_index] = _Outage(fault, since, now, loud)
            self._answering.clear()
            if loud:
                self._last_logged[host_index] = (fault.kind, now)
                self._log_start(host_index, fault, context)
            else:
                self._quiet[host_index] = self._quiet.get(host_index, 0) + 1
                logger.debug("Redis host %d %s again (%s)", host_index, _WHAT[fault.kind], fault)
        elif now - outage.logged_at >= STILL_DOWN_EVERY_S:
            outage.fault = fault
            outage.logged_at = now
            outage.logged = True
            logger.warning(
                "Redis host %d (%s) still %s after %.0f s (%s)",
                host_index,
                self.hosts[host_index],
                _WHAT[fault.kind],
                now - outage.since,
                fault.reason,
            )
        else:
            outage.fault = fault
        return True

    def answered(self, host_index: int, context: str) -> None:
        """A call to the host succeeded: an outage of it, if any, is over."""
        outage = self._outages.pop(host_index, None)
        if outage is None:
            return
        self.metrics.reconnected()
        if outage.logged:
            logger.info(
                "Redis host %d is back for %s after %.0f s",
                host_index,
                context,
                self.clock() - outage.since,
            )
        if not self._outages:
            self._answering.set()

    def down(self, host_index: int) -> bool:
        return host_index in self._outages

    async def wait_answering(self) -> None:
        """Return once no host is known to be in an outage."""
        await self._answering.wait()

    def problem(self) -> str | None:
        """What Redis refuses now, for health; None when every host is answering or only
        unreachable, which the worker waits out by itself and a restart would not help."""
        for index, outage in sorted(self._outages.items()):
            if outage.fault.kind == UNREACHABLE:
                continue
            what = _WHAT[outage.fault.kind]
            return f"Redis host {index} ({self.hosts[index]}) {what}: {outage.fault.reason}"
        return None

    def _log_start(self, host_index: int, fault: RedisFault, context: str) -> None:
        host = self.hosts[host_index]
        quiet = self._quiet.pop(host_index, 0)
        if quiet:
            logger.info(
                "Redis host %d had %d more brief outage(s) since the last warning",
                host_index,
                quiet,
            )
        if fault.kind == CREDENTIALS:
            logger.error(
                "Redis host %d (%s) refused the worker's credentials (%s): %s",
                host_index,
                host,
                fault.reason,
                _CREDENTIALS_FIX,
            )
            return
        logger.warning(
            "Redis host %d %s for %s (%s, %s); retrying with backoff",
            host_index,
            _WHAT[fault.kind],
            context,
            host,
            fault.reason,
        )
