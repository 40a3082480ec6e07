"""A poller's own Redis connection: it pops one channel there and tracks it for arrival notices."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.exceptions import NoScriptError, ResponseError

from worker.errors import REFUSING, redis_fault
from worker.transport.connection import call, dedicated_connection
from worker.transport.queue import Popped, float_or_none, parse_pop

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection

    from worker.transport.arrivals import ArrivalWatch
    from worker.transport.queue import ChannelQueue

# Redis's reply when the REDIRECT target has gone (the watch's connection dropped meanwhile).
_NO_SUCH_CLIENT = "does not exist"


class PopConnection:
    """Pops ``queue`` on a connection held for one poller, outside the client's pool.

    A poller pops in a loop, on the way of every message from its send to its handler, so it
    skips what a pooled command costs each time (checking a connection out and in, redis-py's
    client layers of locks, retries and instrumentation) and sends the script on its own
    connection::

        popper = PopConnection(queue, watch)
        popped, remaining = await popper.pop(10, lease_deadline=time.time() + 30)

    With a ``watch``, the connection also tells Redis to track the keys its pops read, with the
    notices redirected to the watch's connection: ``CLIENT TRACKING ON REDIRECT <watch> NOLOOP``.
    The pop script reads the channel after popping, so the next change to it by anyone else (a
    send, a requeue) sends the watch a notice. Tracking in this default mode is one-shot: a
    notified key is forgotten until the next pop reads it, so a send's ``EXPIRE`` that reaches
    Redis after its ``ZADD`` and before that pop adds no second notice, and NOLOOP leaves out
    the pops' own changes (on Redis 7; Redis 6 may notify those made inside a script). Redis
    tracks every key the script names, so an acknowledgement (the lease removed) sends the
    watch a notice too, which it ignores.
    """

    def __init__(self, queue: ChannelQueue, watch: ArrivalWatch | None = None) -> None:
        self.queue = queue
        self.watch = watch
        self.connection = dedicated_connection(queue.redis)
        # The watch connection this connection's tracking reports to, once turned on.
        self._redirect_id: int | None = None

    async def pop(self, count: int, lease_deadline: float = 0.0) -> tuple[list[Popped], int]:
        """Take up to ``count`` of the oldest messages without waiting, and say how many are left.

        With a ``lease_deadline``, each message is also held in the in-flight set until then,
        in the same atomic step. Redis errors propagate; the next call opens the connection again.
        """
        connection = await self._connected()
        if self.watch is not None:
            await self._track(connection, self.watch)
        sha, source = await self.queue.pop_script()
        queue = self.queue
        keys = queue.pop_keys()
        command = ("EVALSHA", sha, len(keys), *keys, *queue.pop_args(count, lease_deadline))
        try:
            try:
                reply = await call(connection, *command)
            except NoScriptError:
                # The server lost its script cache (a restart, SCRIPT FLUSH): load and try again.
                await call(connection, "SCRIPT", "LOAD", source)
                reply = await call(connection, *command)
        except ResponseError:
            # An error reply leaves the connection in step.
            raise
        except BaseException:
            # A reset, a timeout or a cancel may leave it half-written or with a reply unread
            # (uvloop and asyncio then raise RuntimeError or AttributeError on its next use):
            # start afresh on the next call.
            await connection.disconnect()
            raise
        return parse_pop(reply)

    async def wait_pop(self, timeout_s: float) -> Popped | None:
        """Take the oldest message, waiting up to ``timeout_s`` for one to arrive (no lease).

        Only priority 0 is waited on: a message of another priority that arrives meanwhile is
        taken by the next ``pop()``, after this wait ends.

        The size of the attempt records rides along in the same round trip: when there are none,
        the popped message has none either (a message's record is written before it re-enters
        the channel and removed only by whoever holds it), so a fresh message costs no second
        round trip.
        """
        connection = await self._connected()
        keys = self.queue.keys
        commands = [("BZPOPMIN", keys.queue, timeout_s), ("HLEN", keys.attempts)]
        await connection.send_packed_command(connection.pack_commands(commands))
        try:
            result = await connection.read_response()
            records = await connection.read_response()
        except BaseException:
            # An error reply to the first leaves the second unread: start afresh.
            await connection.disconnect()
            raise
        if result is None:
            return None
        _, member, score = result
        if not records:
            return Popped(member, float(score))
        attempts = await call(connection, "HGET", keys.attempts, member)
        first = await call(connection, "HGET", keys.first_attempt, member) if attempts else None
        return Popped(member, float(score), int(attempts or 0), float_or_none(first))

    async def aclose(self) -> None:
        """Close the connection; Redis forgets its tracking with it."""
        await self.connection.disconnect()

    async def _connected(self) -> AbstractConnection:
        connection = self.connection
        if not connection.is_connected:
            # A new connection has no tracking: turned on again by the next pop.
            self._redirect_id = None
            await connection.connect()  # type: ignore[no-untyped-call]
        return connection

    async def _track(self, connection: AbstractConnection, watch: ArrivalWatch) -> None:
        redirect_id = watch.client_id
        if redirect_id is None or redirect_id == self._redirect_id:
            return
        try:
            # Turning it on again with another REDIRECT moves it to a reconnected watch.
            await call(connection, "CLIENT", "TRACKING", "ON", "REDIRECT", redirect_id, "NOLOOP")
        except ResponseError as error:
            if _NO_SUCH_CLIENT in str(error):
                watch.gone(redirect_id)
                return
            fault = redis_fault(error)
            if fault is not None and fault.kind == REFUSING:
                # Refused for now (BUSY, LOADING...), not refused for good: the pop fails too.
                raise
            watch.refuse(error)
            return
        self._redirect_id = redirect_id
