"""Wake an at-least-once poller as soon as its channel changes, through Redis key tracking.

An at-least-once pop writes the lease in the same atomic step as the pop, which a blocking pop
cannot do, so those channels are polled. Redis 6 and later can push a notice whenever a key
changes, with no server configuration: client-side caching's broadcasting mode
(``CLIENT TRACKING ON BCAST PREFIX <key>``) redirected to a connection subscribed to
``__redis__:invalidate``. A send's ``ZADD`` then wakes the poller one network hop later, as a
blocking pop would, and an idle channel needs only an occasional safety poll. Servers without
tracking (older Redis, or an ACL that forbids it) keep the faster timed polling.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from worker._backoff import Backoff
from worker.errors import REDIS_DOWN

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

logger = logging.getLogger(__name__)

INVALIDATE_CHANNEL = b"__redis__:invalidate"
# A silent subscription is pinged this often; a ping unanswered by the next one means the
# connection is gone even if the socket never said so.
KEEPALIVE_S = 5.0


class ArrivalWatch:
    """Sets ``arrived`` whenever the channel's key on one host is modified."""

    def __init__(self, redis: Redis, key: str, label: str) -> None:
        self.redis = redis
        self.key = key.encode()
        self.label = label
        self.arrived = asyncio.Event()
        #: Whether notices are flowing now; while false the poller keeps to timed polling.
        self.live = False
        #: Notices read, about any key under the channel key's prefix.
        self.notices = 0

    async def run(self) -> None:
        """Keep a tracking subscription open until cancelled, reconnecting; never raises."""
        backoff = Backoff()
        while True:
            connection = self._connection()
            try:
                if not await self._subscribe(connection):
                    return
                backoff.reset()
                await self._listen(connection)
            except ResponseError as error:
                # An old server (no CLIENT TRACKING), or an ACL without CLIENT or SUBSCRIBE.
                logger.info("%s is polled: the server refused key tracking (%s)", self.label, error)
                return
            except REDIS_DOWN:
                pass
            except Exception:
                logger.exception("Watching %s for arrivals failed; polling meanwhile", self.label)
            finally:
                self._lost()
                await connection.disconnect()
            await backoff.wait()

    def _connection(self) -> AbstractConnection:
        """A connection like the pool's (address, credentials, TLS, protocol), outside it."""
        connection: AbstractConnection = self.redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        return connection

    def _lost(self) -> None:
        # The poller may be waiting for a notice that will not come: let it poll on a timer.
        self.live = False
        self.arrived.set()

    async def _subscribe(self, connection: AbstractConnection) -> bool:
        """Turn tracking on for this connection; False when this redis-py cannot read notices."""
        await connection.connect()  # type: ignore[no-untyped-call]
        resp3 = str(getattr(connection, "protocol", 2)) == "3"
        if resp3:
            # RESP3 sends notices to the tracking connection itself, as "invalidate" push
            # frames, which redis-py hands to this hook.
            hook = getattr(connection._parser, "set_invalidation_push_handler", None)
            if hook is None:
                logger.info("%s is polled: this redis-py cannot read key notices", self.label)
                return False
            hook(self._on_invalidate)
            redirect: tuple[Any, ...] = ()
        else:
            # RESP2 has no push frames: notices go to a subscriber, here the same connection.
            redirect = ("REDIRECT", await _call(connection, "CLIENT", "ID"))
        await _call(connection, "CLIENT", "TRACKING", "ON", *redirect, "BCAST", "PREFIX", self.key)
        if not resp3:
            await _call(connection, "SUBSCRIBE", INVALIDATE_CHANNEL)
        self.live = True
        # Anything sent before tracking began is found by the poll this wakes.
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
        if keys is None or self.key in keys:
            self.arrived.set()

    async def _listen(self, connection: AbstractConnection) -> None:
        pinged = False
        while True:
            # push_request: a RESP3 push frame is returned (after its hook ran), not skipped.
            notice = await connection.read_response(timeout=KEEPALIVE_S, push_request=True)
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


async def _call(connection: AbstractConnection, *args: Any) -> Any:
    await connection.send_command(*args)
    return await connection.read_response()
