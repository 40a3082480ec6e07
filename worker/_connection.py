"""Single Redis connections held outside a client's pool, for callers that keep one open."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection


def dedicated_connection(redis: Redis) -> AbstractConnection:
    """A connection like the pool's (address, credentials, TLS, protocol), but not lent by it."""
    connection: AbstractConnection = redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    return connection


async def call(connection: AbstractConnection, *args: Any) -> Any:
    """Send one command and return its reply; an error reply is raised as redis-py's exception."""
    await connection.send_command(*args)
    return await connection.read_response()
