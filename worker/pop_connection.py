"""A poller's own Redis connection: it pops one channel there and tracks it for arrival notices."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.exceptions import NoScriptError, ResponseError

from worker import scripts
from worker._connection import call, dedicated_connection
from worker.queue import Popped, float_or_none, parse_pop

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection

    from worker.arrivals import ArrivalWatch
    from worker.queue import ChannelQueue


class PopConnection:
    """Pops ``queue`` on a connection held for the poller, outside the client's pool.

    A poller pops in a loop, on the way of every message from its send to its handler, so it
    skips what a pooled command costs each time (checking a connection out and in, redis-py's
    client layers of locks, retries and instrumentation) and sends the script on its own
    connection.

    With a ``watch``, the connection also tells Redis to track the keys it reads, with notices
    redirected to the watch's connection: ``CLIENT TRACKING ON REDIRECT <watch> NOLOOP``. The pop
    script ends by reading the channel, so the next change to it by anyone else (a send, a
    requeue) sends the watch one notice. Tracking in this default mode is one-shot: the key is
    forgotten once notified until the next pop reads it, so a send's ``EXPIRE`` after its
    ``ZADD`` adds no second notice, and NOLOOP leaves out the pop's own change. One message
    arriving on an idle channel costs one notice and one pop.
    """

    def __init__(self, queue: ChannelQueue, watch: ArrivalWatch | None = None) -> None:
        self.queue = queue
        self.watch = watch
        self.connection = dedicated_connection(queue.redis)
        # The watch connection that tracking on this connection reports to, once turned on.
        self._tracking_for: int | None = None

    async def pop(self, count: int, lease_deadline: float = 0.0) -> tuple[list[Popped], int]:
        """Like ``ChannelQueue.pop``, and how many messages the channel still holds after it.

        Redis errors propagate (the connection is closed and reopened on the next pop).
        """
        connection = await self._connected()
        if self.watch is not None:
            await self._track(connection, self.watch)
        command = self.queue.pop_command(count, lease_deadline)
        try:
            reply = await call(connection, *command)
        except NoScriptError:
            # The server lost its script cache (a restart, SCRIPT FLUSH): load and try again.
            await call(connection, "SCRIPT", "LOAD", scripts.POP)
            reply = await call(connection, *command)
        return parse_pop(reply)

    async def wait_pop(self, timeout_s: float) -> Popped | None:
        """Take the oldest message, waiting up to ``timeout_s`` for one to arrive (no lease).

        The size of the attempt records rides along in the same round trip: when there are none,
        the popped message has none either (a message's record is written before it re-enters
        the channel and removed only by whoever holds it), so a fresh message costs no second
        round trip.
        """
        connection = await self._connected()
        keys = self.queue.keys
        commands = [("BZPOPMIN", keys.queue, timeout_s), ("HLEN", keys.attempts)]
        await connection.send_packed_command(connection.pack_commands(commands))
        result = await connection.read_response()
        records = await connection.read_response()
        if result is None:
            return None
        _, member, score = result
        if not records:
            return Popped(member, float(score))
        attempts = await call(connection, "HGET", keys.attempts, member)
        first = await call(connection, "HGET", keys.first_attempt, member) if attempts else None
        return Popped(member, float(score), int(attempts or 0), float_or_none(first))

    async def _connected(self) -> AbstractConnection:
        connection = self.connection
        if not connection.is_connected:
            # A new connection has no tracking: turned on again by the next pop.
            self._tracking_for = None
            await connection.connect()  # type: ignore[no-untyped-call]
        return connection

    async def _track(self, connection: AbstractConnection, watch: ArrivalWatch) -> None:
        client_id = watch.client_id
        if client_id is None or client_id == self._tracking_for or watch.refused:
            return
        try:
            # Turning it on again with another REDIRECT moves it to a reconnected watch.
            await call(connection, "CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "NOLOOP")
        except ResponseError as error:
            watch.refuse(error)
            return
        self._tracking_for = client_id

    async def aclose(self) -> None:
        await self.connection.disconnect()
