"""Every long-lived task of the worker is supervised: a failure is logged once with its reason,
the task restarts with backoff, and the worker goes on handling and acknowledging messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.exceptions
from channels_redis.core import RedisChannelLayer

import worker.consume.worker as worker_module
from tests.worker._inprocess import (
    Probe,
    channel_app,
    looping_app,
    make_worker,
    running,
    send_numbered,
    wait_until,
)
from worker.backoff import Backoff
from worker.consume.instance import InstanceSlot
from worker.consume.listener import supervise
from worker.consume.settle import Settlement
from worker.ops.health import HealthReporter
from worker.ops.stats import Stats
from worker.transport.arrivals import ArrivalWatch
from worker.transport.keys import ChannelKeys

CHANNEL = "supervised-jobs"
INJECTED = "RuntimeError: injected"


class Failing:
    """Stands in for a task's coroutine function: raises on the calls in ``failures``, then
    runs the real one."""

    def __init__(self, real: Callable[..., Awaitable[None]], failures: list[BaseException]) -> None:
        self.real = real
        self.failures = failures
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        await self.real(*args, **kwargs)


@pytest.fixture
def no_backoff_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff delays are recorded instead of slept."""
    delays: list[float] = []

    async def record(self: Backoff) -> None:
        delays.append(self.next_delay_s())
        await asyncio.sleep(0)  # Still a turn of the loop, as a wait is.

    monkeypatch.setattr(Backoff, "wait", record)
    return delays


async def test_a_failure_is_logged_once_per_reason_with_backoff_between_restarts(
    caplog: pytest.LogCaptureFixture, no_backoff_waits: list[float]
) -> None:
    async def ends() -> None:
        return None

    misconf = redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB snapshots")
    same = [RuntimeError("injected"), RuntimeError("injected"), RuntimeError("injected")]
    task = Failing(ends, [*same, ValueError("another reason"), misconf])
    stats = Stats()

    with caplog.at_level(logging.DEBUG, logger="worker"):
        await supervise("Acknowledgements of channel 'jobs'", task, stats)

    assert task.calls == 6
    assert stats.listener_restarts == 5
    # Full jitter, doubling its ceiling from 0.1 s each time.
    assert len(no_backoff_waits) == 5
    assert all(0.1 <= delay_s <= 0.1 * 2**n for n, delay_s in enumerate(no_backoff_waits))
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert [record.getMessage() for record in errors] == [
        f"Acknowledgements of channel 'jobs' died unexpectedly ({INJECTED}); restarting it",
        "Acknowledgements of channel 'jobs' died unexpectedly (ValueError: another reason); "
        "restarting it",
        "Acknowledgements of channel 'jobs' died unexpectedly (ResponseError: MISCONF Redis is "
        "configured to save RDB snapshots); restarting it",
    ]
    # A traceback for a failure of our own; a Redis refusal is its reason alone.
    assert [bool(record.exc_info) for record in errors] == [True, True, False]
    repeats = [record for record in caplog.records if "died again" in record.getMessage()]
    assert len(repeats) == 2
    assert all(record.levelno == logging.DEBUG for record in repeats)


def _patch(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> Failing:
    """Make the first call of ``owner.name`` (a method or a module's function) fail."""
    failing = Failing(getattr(owner, name), [RuntimeError("injected")])
    if not isinstance(owner, type):
        monkeypatch.setattr(owner, name, failing)
        return failing

    async def method(self: Any, *args: Any, **kwargs: Any) -> None:
        await failing(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, method)
    return failing


TASKS: dict[str, tuple[Any, str, str]] = {
    # (where the coroutine function lives, its name, the task's name in the log)
    "acknowledgements": (
        Settlement,
        "flush_acks_forever",
        f"Acknowledgements of channel {CHANNEL!r}",
    ),
    "maintenance": (worker_module, "maintain", f"Maintenance of channel {CHANNEL!r}"),
    "instance slot": (InstanceSlot, "run", f"Instance slot #0 of channel {CHANNEL!r}"),
    "arrival watch": (ArrivalWatch, "run", "Arrival watch of "),
    "health reporter": (HealthReporter, "run", "Health reporter"),
}


@pytest.mark.redis
@pytest.mark.parametrize("task", list(TASKS))
async def test_a_task_of_the_worker_that_dies_is_restarted_and_messages_keep_flowing(
    task: str,
    layer: RedisChannelLayer,
    worker_layer: RedisChannelLayer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    no_backoff_waits: list[float],
) -> None:
    owner, name, logged_as = TASKS[task]
    failing = _patch(monkeypatch, owner, name)
    probe = Probe()
    worker = make_worker(channel_app({CHANNEL: looping_app(probe)}), [CHANNEL], worker_layer)
    inflight = ChannelKeys.for_channel(worker_layer.prefix, CHANNEL).inflight

    with caplog.at_level(logging.INFO, logger="worker"):
        async with running(worker):
            await wait_until(lambda: failing.calls >= 2, what=f"the {task} restarted")
            await send_numbered(layer, CHANNEL, 20)

            async def all_acknowledged() -> bool:
                return len(probe.finished) == 20 and await layer.connection(0).zcard(inflight) == 0

            await wait_until(all_acknowledged, what="20 messages handled and acknowledged")

    assert sorted(probe.finished) == list(range(20))
    died = [record for record in caplog.records if "died unexpectedly" in record.getMessage()]
    assert len(died) == 1, [record.getMessage() for record in died]
    message = died[0].getMessage()
    assert message.startswith(logged_as), message
    assert message.endswith(f"died unexpectedly ({INJECTED}); restarting it"), message
    assert worker.stats.listener_restarts == 1
