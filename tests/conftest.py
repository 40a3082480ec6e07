"""Suite-wide setup: Django settings, and a real redis-server for ``redis`` tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import django
import pytest

from tests.redis_server import RedisServer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()


@pytest.fixture(scope="session")
def redis_session_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_server(redis_session_server: RedisServer) -> RedisServer:
    """The shared redis-server, flushed before each test."""
    with redis_session_server.client() as client:
        client.flushall()
    return redis_session_server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that stop, kill or restart it."""
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always")
    server.start()
    yield server
    server.cleanup()
