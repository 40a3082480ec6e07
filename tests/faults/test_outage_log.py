"""How a worker logs a Redis outage: once per host, a reminder while it lasts, one line at its end.

The outages are real redis-py errors from a real port with nothing listening and a real
redis-server refusing a password; the clock is the test's, so 30 s pass at once.
"""

from __future__ import annotations

import logging

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.redis_server import RedisServer, free_port
from worker.consume.outage import STILL_DOWN_EVERY_S, RedisHosts
from worker.errors import CREDENTIALS, REFUSING, UNREACHABLE, redis_fault
from worker.ops.metrics import NullMetrics
from worker.ops.stats import Stats

HOST = "redis://***@127.0.0.1:6379/0"


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def connection_refused() -> redis.ConnectionError:
    with redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0)) as client:
        try:
            client.ping()
        except redis.ConnectionError as error:
            return error
    raise AssertionError("nothing listens there, yet PING was answered")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    found = [record.getMessage() for record in caplog.records if record.levelno >= logging.INFO]
    caplog.clear()
    return found


def test_an_outage_is_one_warning_a_reminder_every_30_s_and_one_line_at_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="worker.consume.outage")
    clock = Clock()
    stats = Stats()
    hosts = RedisHosts([HOST], stats, NullMetrics(), clock)
    error = connection_refused()

    for _ in range(50):
        assert hosts.failed(0, error, "channel 'jobs'")
        clock.now_s += 0.5
    [start] = lines(caplog)
    assert start.startswith(
        f"Redis host 0 unreachable for channel 'jobs' ({HOST}, ConnectionError:"
    )
    assert stats.redis_errors == 50
    # Unreachable alone is waited out: health stays good.
    assert hosts.down(0)
    assert hosts.problem() is None

    clock.now_s += STILL_DOWN_EVERY_S
    hosts.failed(0, error, "channel 'jobs'")
    [reminder] = lines(caplog)
    assert reminder.startswith(f"Redis host 0 ({HOST}) still unreachable after 55 s")

    hosts.answered(0, "channel 'jobs'")
    hosts.answered(0, "channel 'jobs'")
    assert lines(caplog) == ["Redis host 0 is back for channel 'jobs' after 55 s"]
    assert not hosts.down(0)


def test_a_connection_that_keeps_dropping_is_one_warning_per_30_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="worker.consume.outage")
    clock = Clock()
    hosts = RedisHosts([HOST], Stats(), NullMetrics(), clock)
    error = connection_refused()
    for _ in range(20):
        hosts.failed(0, error, "channel 'jobs'")
        clock.now_s += 0.1
        hosts.answered(0, "channel 'jobs'")
        clock.now_s += 0.4
    found = lines(caplog)
    assert len(found) == 2, found
    assert found[0].startswith("Redis host 0 unreachable for channel 'jobs'")
    assert found[1] == "Redis host 0 is back for channel 'jobs' after 0 s"

    clock.now_s += STILL_DOWN_EVERY_S
    hosts.failed(0, error, "channel 'jobs'")
    found = lines(caplog)
    assert found[0] == "Redis host 0 had 19 more brief outage(s) since the last warning"
    assert found[1].startswith("Redis host 0 unreachable for channel 'jobs'")


@pytest.mark.redis
def test_refused_credentials_are_one_error_naming_the_fix_and_a_health_problem(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RedisServer(password="right-secret")
    server.start()
    try:
        client = redis.Redis(port=server.port, password="wrong-secret", retry=Retry(NoBackoff(), 0))
        with client, pytest.raises(redis.AuthenticationError) as raised:
            client.ping()
    finally:
        server.cleanup()
    fault = redis_fault(raised.value)
    assert fault is not None
    assert fault.kind == CREDENTIALS
    hosts = RedisHosts([HOST], Stats(), NullMetrics(), Clock())
    for _ in range(10):
        hosts.failed(0, raised.value, "channel 'jobs'")
    [line] = lines(caplog)
    assert line.startswith(f"Redis host 0 ({HOST}) refused the worker's credentials (")
    assert "set the right password" in line
    assert hosts.problem() == (
        f"Redis host 0 ({HOST}) refused the worker's credentials: {fault.reason}"
    )


def test_errors_are_classified_in_one_place() -> None:
    cases = {
        "MISCONF Redis is configured to save RDB snapshots": REFUSING,
        "BUSY Redis is busy running a script.": REFUSING,
        "UNBLOCKED force unblock from blocking operation": REFUSING,
        "Command # 1 (SET x) of pipeline caused error: ('BUSY Redis is busy',)": REFUSING,
        "NOPERM this user has no permissions": CREDENTIALS,
    }
    for message, kind in cases.items():
        fault = redis_fault(redis.ResponseError(message))
        assert fault is not None, message
        assert fault.kind == kind, message
    assert redis_fault(redis.ResponseError("WRONGTYPE Operation against a key")) is None
    assert redis_fault(redis.ReadOnlyError("You can't write")) == redis_fault(
        redis.ReadOnlyError("You can't write")
    )
    fault = redis_fault(connection_refused())
    assert fault is not None
    assert fault.kind == UNREACHABLE
    # A bug of the worker's own is not an outage, whatever its type.
    assert redis_fault(AttributeError("'NoneType' object has no attribute 'x'")) is None
