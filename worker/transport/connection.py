"""Single Redis connections held outside a client's pool, for callers that keep one open."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection


def dedicated_connection(redis: Redis) -> AbstractConnection:
    """A connection like the pool's (address, credentials, TLS, protocol), but not lent by it.

    Its owner notices a lost connection itself and sets it up again (tracking, a subscription),
    so redis-py's health check, which may reconnect behind its back (with a retry configured)
    or PING a subscribed RESP2 connection, is off.
    """
    connection: AbstractConnection = redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    connection.health_check_interval = 0
    return connection


async def call(connection: AbstractConnection, *args: Any) -> Any:
    """Send one command and return its reply; an error reply is raised as redis-py's exception."""
    await connection.send_command(*args)
    return await connection.read_response()
