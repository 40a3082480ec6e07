"""Wake an at-least-once poller as soon as its channel changes, through Redis key tracking.

An at-least-once pop writes the lease in the same atomic step as the pop, which a blocking pop
cannot do, so those channels are polled. Redis 6 and later can push a notice whenever a key
changes, with no server configuration: client-side caching's key tracking. The poller's own
connection tracks the channel key its pops read and redirects the notices to an ``ArrivalWatch``
connection (see ``transport.pop_connection``), so a send's ``ZADD`` wakes the poller one network
hop later, as a blocking pop would, and an idle channel needs only an occasional safety poll.
Servers without tracking (older Redis, or an ACL that forbids it) keep the faster timed polling.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from worker.backoff import Backoff
from worker.errors import CREDENTIALS, redis_fault
from worker.transport.connection import call, dedicated_connection

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

logger = logging.getLogger(__name__)

INVALIDATE_CHANNEL = b"__redis__:invalidate"
# A silent connection is pinged this often; a ping unanswered by the next one means the
# connection is gone even if the socket never said so.
KEEPALIVE_S = 5.0


class ArrivalWatch:
    """Receives the key notices of one channel's poller on one host; sets ``arrived`` for its key.

    The poller's connection sends its notices here (``REDIRECT`` to ``client_id``); notices
    about other keys its pops read are counted and ignored, except those about ``also``: the
    channel's index of priority levels gains a level when a message of another priority
    arrives at an empty channel.
    """

    def __init__(self, redis: Redis, key: str, label: str, also: Sequence[str] = ()) -> None:
        self.redis = redis
        self.key = key.encode()
        self.wakes = {self.key, *(other.encode() for other in also)}
        self.label = label
        self.arrived = asyncio.Event()
        #: Whether notices are flowing now; while false the poller keeps to timed polling.
        self.live = False
        #: This connection's Redis client id while live: where the poller redirects notices.
        self.client_id: int | None = None
        #: Set once the server refused tracking: the channel is polled from then on.
        self.refused = False
        #: Notices read, about any key the poller's connection tracks.
        self.notices = 0
        # Set when Redis said this connection is gone before the connection itself did.
        self._stale = False

    async def run(self) -> None:
        """Receive notices until cancelled or refused, reconnecting; never raises."""
        backoff = Backoff()
        while not self.refused:
            connection = dedicated_connection(self.redis)
            try:
                if not await self._become_target(connection):
                    return
                backoff.reset()
                await self._listen(connection)
            except ResponseError as error:
                fault = redis_fault(error)
                if fault is None or fault.kind == CREDENTIALS:
                    self.refuse(error)
                # Otherwise Redis refuses for now (BUSY, LOADING...): poll meanwhile, try again.
            except Exception as error:
                # A lost connection in any form is waited out; the pollers log the outage.
                if redis_fault(error) is None:
                    logger.exception(
                        "Watching %s for arrivals failed; polling meanwhile", self.label
                    )
            finally:
                self._lost()
                await connection.disconnect()
            if not self.refused:
                await backoff.wait()

    def gone(self, client_id: int) -> None:
        """Redis no longer knows ``client_id``, this connection's: reconnect, polling meanwhile."""
        if client_id == self.client_id:
            self._stale = True
            self._lost()

    def refuse(self, error: Exception) -> None:
        """The server refused key tracking (an old server, or an ACL): poll from now on."""
        if not self.refused:
            logger.info("%s is polled: the server refused key tracking (%s)", self.label, error)
        self.refused = True
        self._lost()

    def _lost(self) -> None:
        # The poller may be waiting for a notice that will not come: let it poll on a timer.
        self.live = False
        self.client_id = None
        self.arrived.set()

    async def _become_target(self, connection: AbstractConnection) -> bool:
        """Make this connection a notice target; False when this redis-py cannot read notices."""
        await connection.connect()  # type: ignore[no-untyped-call]
        resp3 = str(getattr(connection, "protocol", 2)) == "3"
        if resp3:
            # RESP3 sends notices to the redirect target as "invalidate" push frames, which
            # redis-py hands to this hook.
            hook = getattr(connection._parser, "set_invalidation_push_handler", None)
            if hook is None:
                logger.info("%s is polled: this redis-py cannot read key notices", self.label)
                return False
            hook(self._on_invalidate)
        client_id = int(await call(connection, "CLIENT", "ID"))
        if not resp3:
            # RESP2 has no push frames: the target subscribes to the notice channel.
            await call(connection, "SUBSCRIBE", INVALIDATE_CHANNEL)
        self.client_id = client_id
        self._stale = False
        self.live = True
        # The poller's next pop, which this wakes, redirects tracking here and finds anything
        # sent meanwhile.
        self.arrived.set()
        return True

    async def _on_invalidate(self, notice: Any) -> bool:
        # A RESP3 ``invalidate`` push: [b"invalidate", keys].
        if isinstance(notice, list) and len(notice) == 2:
            self._notice(notice[1])
        return True

    def _notice(self, keys: list[bytes] | None) -> None:
        """One invalidation notice: the keys modified, or None after a flush (every key)."""
        self.notices += 1
        if keys is None or not self.wakes.isdisjoint(keys):
            self.arrived.set()

    async def _listen(self, connection: AbstractConnection) -> None:
        pinged = False
        while not self.refused:
            # push_request: a RESP3 push frame is returned (after its hook ran), not skipped.
            notice = await connection.read_response(timeout=KEEPALIVE_S, push_request=True)
            if self._stale:
                raise ConnectionError(f"Redis no longer knows the connection watching {self.label}")
            if notice is None:
                if pinged:
                    raise ConnectionError(f"no answer to PING while watching {self.label}")
                await connection.send_command("PING")
                pinged = True
                continue
            pinged = False
            # A RESP2 notice: [b"message", b"__redis__:invalidate", keys].
            if isinstance(notice, list) and len(notice) == 3 and notice[0] == b"message":
                self._notice(notice[2])
