"""Fixtures of the fault tests: worker processes that record what they handle, and a client of
the suite's redis-server where they record it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_server import RedisServer
from tests.worker.test_faults import Fleet


@pytest.fixture
def fleet(tmp_path: Path, redis_server: RedisServer) -> Iterator[Fleet]:
    """Worker processes whose consumers record on the suite's redis-server, never through the
    Redis (or proxy) a test puts at fault."""
    processes = Fleet(tmp_path)
    processes.extra_env = {"RECORD_REDIS_URL": redis_server.url}
    yield processes
    processes.close()


@pytest.fixture
def records_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the suite's redis-server, where the consumers record their runs."""
    with redis_server.client() as client:
        yield client
