"""The schedule loop on a real redis-server, time moved by hand: each tick fires once across
replicas, a claim left by a dead replica is taken over, missed ticks follow their policy."""

from __future__ import annotations

import asyncio
import logging
from binascii import crc32
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from channels_redis.core import RedisChannelLayer
from django.test import override_settings
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.redis_server import RedisServer
from tests.worker._inprocess import (
    Probe,
    cancel_and_wait,
    channel_app,
    looping_app,
    make_worker,
    running,
    wait_until,
)
from tests.worker.schedule_helpers import CHANNEL, SWEEP, schedule_settings
from tests.worker.schedules_project import settings as schedules_project
from worker.cli.options import WorkerOptions
from worker.cli.runner import build_worker
from worker.consume.outage import RedisHosts
from worker.errors import ScheduleFailed
from worker.ops.metrics import Metrics, NullMetrics
from worker.ops.stats import Stats
from worker.project import load_layer
from worker.schedules.claims import SKIPPED, TickClaims
from worker.schedules.clock import ManualClock
from worker.schedules.definitions import Schedule
from worker.schedules.fire import TICK_KEY, Fired
from worker.schedules.loop import ScheduleLoop
from worker.schedules.setup import project_schedules
from worker.schedules.status import gather
from worker.schedules.ticks import fire_at
from worker.transport.keys import schedule_state_key, schedule_tick_key

pytestmark = pytest.mark.redis

LEASE_S = 10.0
#: A tick of every minute: 1_800_000_000 is a multiple of 60.
T0 = 1_800_000_000.0


@contextmanager
def project(redis_url: str, schedules: dict[str, Any]) -> Iterator[dict[str, Schedule]]:
    with schedule_settings(redis_url, schedules):
        from django.conf import settings

        yield project_schedules(settings.CHANNEL_WORKER)


class Replicas:
    """Schedule loops of several workers on one clock, as tasks of this event loop."""

    def __init__(self, schedule: Schedule, clock: ManualClock) -> None:
        self.schedule = schedule
        self.clock = clock
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.layer: RedisChannelLayer = load_layer("default")
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(
        self, worker_id: str, send: Callable[[Schedule, float], Awaitable[Fired]] | None = None
    ) -> ScheduleLoop:
        extra: dict[str, Any] = {} if send is None else {"send": send}
        loop = ScheduleLoop(
            self.schedule, self.layer, worker_id, clock=self.clock, metrics=self.metrics,
            lease_s=LEASE_S, **extra,
        )  # fmt: skip
        self.tasks[worker_id] = asyncio.create_task(loop.run())
        return loop

    async def stop(self, worker_id: str) -> None:
        await cancel_and_wait(self.tasks.pop(worker_id))

    def count(self, metric: str, schedule: str) -> float:
        value = self.registry.get_sample_value(f"channel_worker_{metric}", {"schedule": schedule})
        return value or 0.0

    async def stop_all(self) -> None:
        for worker_id in list(self.tasks):
            await self.stop(worker_id)


@asynccontextmanager
async def replicas(schedule: Schedule, clock: ManualClock) -> AsyncIterator[Replicas]:
    running = Replicas(schedule, clock)
    try:
        yield running
    finally:
        await running.stop_all()


async def state(redis: Redis, schedule: Schedule) -> dict[str, str]:
    key = schedule_state_key("asgi", schedule.name, schedule.digest)
    raw = await redis.hgetall(key)
    return {text(key): text(value) for key, value in raw.items()}


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def wait_for_state(redis: Redis, schedule: Schedule, **expected: str) -> dict[str, str]:
    async def reached() -> bool:
        return (await state(redis, schedule)).items() >= expected.items()

    await wait_until(reached, 5.0, f"state of {schedule.name!r} with {expected}")
    return await state(redis, schedule)


class FlakySend:
    """A send that fails, as a refusing backend does, until ``failing`` is set to False."""

    def __init__(self) -> None:
        self.failing = True

    async def __call__(self, schedule: Schedule, tick_s: float) -> Fired:
        if self.failing:
            raise RuntimeError("the backend refused it")
        return Fired("sent")


async def sent_ticks(layer: RedisChannelLayer, channel: str = CHANNEL) -> list[float]:
    """The ``__tick__`` of each message waiting on ``channel``, in send order."""
    members = await layer.connection(0).zrange(f"{layer.prefix}{channel}", 0, -1)
    return [float(layer.deserialize(member)[TICK_KEY]) for member in members]


async def test_three_replicas_fire_each_tick_once(redis_url: str, redis: Redis) -> None:
    with project(redis_url, {"sweep": {**SWEEP, "every_s": 60}}) as schedules:
        clock = ManualClock(T0 + 1)
        async with replicas(schedules["sweep"], clock) as running:
            for worker_id in ("a", "b", "c"):
                running.start(worker_id)
            await wait_for_state(redis, schedules["sweep"], first_seen=repr(T0 + 1))
            for minute in range(1, 6):
                await clock.set(T0 + 60 * minute)
                await wait_for_state(redis, schedules["sweep"], last_tick=repr(T0 + 60 * minute))
            assert await sent_ticks(running.layer) == [T0 + 60 * m for m in range(1, 6)]
            assert running.count("schedule_fires_total", "sweep") == 5


async def test_a_tick_claimed_by_a_replica_that_dies_before_sending_fires_after_its_lease(
    redis_url: str, redis: Redis
) -> None:
    never = asyncio.Event()

    async def dies_before_sending(schedule: Schedule, tick_s: float) -> Fired:
        await never.wait()  # cancelled here, like a SIGKILL between the claim and the send
        raise AssertionError("unreachable")

    with project(redis_url, {"sweep": {**SWEEP, "every_s": 60}}) as schedules:
        sweep = schedules["sweep"]
        clock = ManualClock(T0 + 1)
        async with replicas(sweep, clock) as running:
            running.start("doomed", dies_before_sending)
            await wait_for_state(redis, sweep, first_seen=repr(T0 + 1))
            await clock.set(T0 + 60)
            tick_key = schedule_tick_key("asgi", "sweep", sweep.digest, int((T0 + 60) * 1000))

            async def claimed() -> bool:
                value = await redis.get(tick_key)
                return value is not None and text(value).startswith("claimed")

            await wait_until(claimed, 5.0, "the doomed replica's claim")
            running.start("survivor")
            await running.stop("doomed")
            await clock.advance(LEASE_S / 2)
            assert await sent_ticks(running.layer) == []  # the lease still holds
            await clock.advance(LEASE_S)
            done = await wait_for_state(redis, sweep, last_tick=repr(T0 + 60))
            assert done["last_worker"] == "survivor"
            assert await sent_ticks(running.layer) == [T0 + 60]


@pytest.mark.parametrize(("policy", "fired_late"), [("skip", False), ("run_once", True)])
async def test_ticks_missed_while_every_worker_was_down_follow_the_policy_without_a_burst(
    redis_url: str, redis: Redis, policy: str, fired_late: bool
) -> None:
    with project(redis_url, {"sweep": {**SWEEP, "every_s": 60, "missed": policy}}) as schedules:
        sweep = schedules["sweep"]
        clock = ManualClock(T0 + 1)
        async with replicas(sweep, clock) as running:
            running.start("first")
            await clock.set(T0 + 60)
            await wait_for_state(redis, sweep, last_tick=repr(T0 + 60))
            await running.stop("first")
            # Every worker down for ten minutes: nine ticks pass unfired.
            await clock.set(T0 + 660 + 30)
            running.start("a")
            running.start("b")
            after = await wait_for_state(redis, sweep, last_tick=repr(T0 + 660))
            expected = [T0 + 60, T0 + 660] if fired_late else [T0 + 60]
            assert await sent_ticks(running.layer) == expected
            assert (after["last_outcome"] == SKIPPED) is not fired_late
            assert running.count("schedule_skips_total", "sweep") == (0 if fired_late else 1)
            # And the schedule goes on at its next tick.
            await clock.set(T0 + 720)
            await wait_for_state(redis, sweep, last_tick=repr(T0 + 720))
            assert await sent_ticks(running.layer) == [*expected, T0 + 720]


async def test_a_changed_definition_starts_with_fresh_state(redis_url: str, redis: Redis) -> None:
    with project(redis_url, {"sweep": {**SWEEP, "every_s": 60, "missed": "run_once"}}) as old:
        clock = ManualClock(T0 + 1)
        async with replicas(old["sweep"], clock) as running:
            running.start("a")
            await clock.set(T0 + 60)
            await wait_for_state(redis, old["sweep"], last_tick=repr(T0 + 60))
    definition = {**SWEEP, "every_s": 120, "missed": "run_once"}
    with project(redis_url, {"sweep": definition}) as new:
        assert new["sweep"].digest != old["sweep"].digest
        await clock.set(T0 + 3600 + 30)
        async with replicas(new["sweep"], clock) as running:
            running.start("a")
            fresh = await wait_for_state(redis, new["sweep"], first_seen=repr(T0 + 3630))
            # Nothing was missed under the new definition: no catch-up run at start.
            assert "last_tick" not in fresh
            await clock.set(T0 + 3600 + 120)
            await wait_for_state(redis, new["sweep"], last_tick=repr(T0 + 3720))
            assert await sent_ticks(running.layer) == [T0 + 60, T0 + 3720]


@pytest.mark.parametrize(
    ("night", "expected"),
    [
        # 02:00 CET becomes 03:00 CEST: 02:30 does not exist, the schedule fires at 03:00.
        (datetime(2026, 3, 29), datetime(2026, 3, 29, 3, 0)),
        # 03:00 CEST becomes 02:00 CET: 02:30 happens twice, the schedule fires at the first.
        (datetime(2026, 10, 25), datetime(2026, 10, 25, 2, 30, fold=0)),
    ],
    ids=["spring-forward", "fall-back"],
)
async def test_a_nightly_schedule_fires_once_on_a_daylight_saving_night(
    redis_url: str, redis: Redis, night: datetime, expected: datetime
) -> None:
    paris = ZoneInfo("Europe/Paris")
    definition = {**SWEEP, "cron": "30 2 * * *", "timezone": "Europe/Paris"}
    with project(redis_url, {"nightly": definition}) as schedules:
        nightly = schedules["nightly"]
        start = night.replace(tzinfo=paris).timestamp()
        tick = expected.replace(tzinfo=paris).timestamp()
        clock = ManualClock(start)
        async with replicas(nightly, clock) as running:
            running.start("a")
            running.start("b")
            await wait_for_state(redis, nightly, first_seen=repr(start))
            # Through the night in five-minute steps, past the changed hour.
            for step in range(1, 12 * 6):
                await clock.set(start + 300 * step)
                if start + 300 * step == tick:
                    await wait_for_state(redis, nightly, last_tick=repr(tick))
            assert await sent_ticks(running.layer) == [tick]


class RecordingClock(ManualClock):
    """A manual clock that records each time a loop waits for."""

    def __init__(self, now_s: float) -> None:
        super().__init__(now_s)
        self.waits_s: list[float] = []

    async def sleep_until(self, when_s: float) -> None:
        self.waits_s.append(when_s)
        await super().sleep_until(when_s)


async def test_a_worker_starting_in_the_repeated_hour_waits_for_the_next_nights_tick(
    redis_url: str, redis: Redis
) -> None:
    definition = {**SWEEP, "cron": "30 2 * * *", "timezone": "Europe/Paris"}
    with project(redis_url, {"nightly": definition}) as schedules:
        nightly = schedules["nightly"]
        # 2026-10-25 02:05 CET, the second 02:05 of the night; 02:30 CEST ran an hour ago.
        start = datetime(2026, 10, 25, 1, 5, tzinfo=UTC).timestamp()
        next_night = datetime(2026, 10, 26, 2, 30, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
        clock = RecordingClock(start)
        async with replicas(nightly, clock) as running:
            running.start("a")
            await wait_until(lambda: next_night in clock.waits_s, 5.0, "a wait for 26 October")
            assert all(when_s > start for when_s in clock.waits_s)  # no spin on a past tick
            await clock.set(next_night)
            await wait_for_state(redis, nightly, last_tick=repr(next_night))
            assert await sent_ticks(running.layer) == [next_night]


async def test_a_task_schedule_enqueues_through_its_backend_and_records_the_result(
    redis_url: str, redis: Redis
) -> None:
    definition = {"task": "tests.worker.tasks_project.tasks.add", "every_s": 60, "args": [2, 3]}
    with project(redis_url, {"sum": definition}) as schedules:
        clock = ManualClock(T0 + 1)
        async with replicas(schedules["sum"], clock) as running:
            running.start("a")
            await clock.set(T0 + 60)
            done = await wait_for_state(redis, schedules["sum"], last_tick=repr(T0 + 60))
            assert done["last_outcome"] == "enqueued"
            from tests.worker.tasks_project.tasks import add

            result = await add.aget_result(done["last_result_id"])
            assert (result.status, result.args) == ("READY", [2, 3])
            members = await running.layer.connection(0).zrange("asgitasks.default", 0, -1)
            assert [running.layer.deserialize(m)["task_id"] for m in members] == [result.id]


async def test_a_failing_send_makes_the_loop_unhealthy_until_a_tick_fires_again(
    redis_url: str, redis: Redis
) -> None:
    flaky = FlakySend()

    with project(redis_url, {"sweep": {**SWEEP, "every_s": 60}}) as schedules:
        sweep = schedules["sweep"]
        clock = ManualClock(T0 + 1)
        async with replicas(sweep, clock) as running:
            loop = running.start("a", flaky)
            await wait_for_state(redis, sweep, first_seen=repr(T0 + 1))
            await clock.set(T0 + 60)
            await wait_until(lambda: running.tasks["a"].done(), 5.0, "the loop to fail")
            assert isinstance(running.tasks["a"].exception(), ScheduleFailed)
            assert loop.problem() == (
                "Schedule 'sweep' could not fire its tick at 2027-01-15T08:01:00+00:00 on "
                "channel 'maintenance': RuntimeError: the backend refused it"
            )
            failed = await state(redis, sweep)
            assert failed["last_error"] == "RuntimeError: the backend refused it"
            assert running.count("schedule_failures_total", "sweep") == 1
            # The worker's supervisor restarts the loop; the tick is still recent: retried.
            flaky.failing = False
            running.tasks["a"] = asyncio.create_task(loop.run())
            await wait_for_state(redis, sweep, last_tick=repr(T0 + 60), last_outcome="sent")
            assert loop.problem() is None


async def test_a_worker_whose_schedule_loop_fails_is_unhealthy_until_it_recovers(
    redis_url: str, redis: Redis
) -> None:
    flaky = FlakySend()

    with project(redis_url, {"sweep": {**SWEEP, "every_s": 60}}) as schedules:
        layer = load_layer("default")
        worker = make_worker(channel_app({CHANNEL: looping_app(Probe())}), [CHANNEL], layer)
        clock = ManualClock(T0 + 1)
        loop = ScheduleLoop(schedules["sweep"], layer, worker.worker_id, clock=clock, send=flaky)
        worker.add_companion(loop)
        async with running(worker):
            await wait_for_state(redis, schedules["sweep"], first_seen=repr(T0 + 1))
            assert worker.listener_problem() is None
            await clock.set(T0 + 60)
            await wait_until(lambda: worker.listener_problem() is not None, 5.0, "unhealthy")
            assert "Schedule 'sweep' could not fire its tick" in str(worker.listener_problem())
            flaky.failing = False  # the worker's supervisor restarts the loop after a backoff
            await wait_for_state(redis, schedules["sweep"], last_tick=repr(T0 + 60))
            assert worker.listener_problem() is None


async def test_a_send_that_finds_redis_unreachable_is_an_outage_not_a_health_problem(
    redis_url: str, redis: Redis
) -> None:
    async def unreachable(schedule: Schedule, tick_s: float) -> Fired:
        raise RedisConnectionError("Connection refused")

    with project(redis_url, {"sweep": {**SWEEP, "every_s": 60}}) as schedules:
        clock = ManualClock(T0 + 1)
        async with replicas(schedules["sweep"], clock) as running:
            loop = running.start("a", unreachable)
            await wait_for_state(redis, schedules["sweep"], first_seen=repr(T0 + 1))
            await clock.set(T0 + 60)
            await wait_until(lambda: running.tasks["a"].done(), 5.0, "the loop to fail")
            assert isinstance(running.tasks["a"].exception(), ScheduleFailed)
            # Waited out with backoff, as the worker's listeners wait out an outage.
            assert loop.problem() is None


async def test_a_worker_stopping_while_it_sends_a_tick_finishes_the_send_and_its_mark(
    redis_url: str, redis: Redis
) -> None:
    sending = asyncio.Event()
    release = asyncio.Event()

    async def slow_send(schedule: Schedule, tick_s: float) -> Fired:
        sending.set()
        await release.wait()
        return Fired("sent")

    with project(redis_url, {"sweep": {**SWEEP, "every_s": 60}}) as schedules:
        sweep = schedules["sweep"]
        clock = ManualClock(T0 + 1)
        async with replicas(sweep, clock) as running:
            running.start("stopping", slow_send)
            await wait_for_state(redis, sweep, first_seen=repr(T0 + 1))
            await clock.set(T0 + 60)
            await asyncio.wait_for(sending.wait(), 5.0)
            task = running.tasks.pop("stopping")
            task.cancel()  # the worker's stop, while the send is under way
            release.set()
            await asyncio.wait({task}, timeout=5.0)
            assert task.cancelled()
            done = await state(redis, sweep)
            # Marked fired by this worker, so no other worker fires it again.
            assert (done["last_tick"], done["last_worker"]) == (repr(T0 + 60), "stopping")


async def test_a_loop_stalled_past_many_ticks_skips_them_once_instead_of_a_burst(
    redis_url: str, redis: Redis
) -> None:
    with project(redis_url, {"sweep": {**SWEEP, "every_s": 60}}) as schedules:
        sweep = schedules["sweep"]
        clock = ManualClock(T0 + 1)
        async with replicas(sweep, clock) as running:
            running.start("a")
            await clock.set(T0 + 60)
            await wait_for_state(redis, sweep, last_tick=repr(T0 + 60))
            # The process was suspended (SIGSTOP) for ten minutes, every other worker too.
            await clock.set(T0 + 660 + 30)
            skipped = await wait_for_state(redis, sweep, last_tick=repr(T0 + 660))
            assert skipped["last_outcome"] == SKIPPED
            assert running.count("schedule_skips_total", "sweep") == 1
            await clock.set(T0 + 720)
            await wait_for_state(redis, sweep, last_tick=repr(T0 + 720))
            assert await sent_ticks(running.layer) == [T0 + 60, T0 + 720]


@asynccontextmanager
async def read_only_host(
    schedule: Schedule, send: Callable[[Schedule, float], Awaitable[Fired]] | None
) -> AsyncIterator[tuple[ScheduleLoop, RedisHosts, asyncio.Task[None]]]:
    """A loop of ``schedule`` reporting to a worker's ``RedisHosts``, run until the block ends."""
    hosts = RedisHosts(["host 0"], Stats(), NullMetrics())
    extra: dict[str, Any] = {} if send is None else {"send": send}
    loop = ScheduleLoop(
        schedule, load_layer("default"), "a", clock=ManualClock(T0 + 1), lease_s=LEASE_S,
        hosts=hosts, **extra,
    )  # fmt: skip
    task = asyncio.create_task(loop.run())
    try:
        yield loop, hosts, task
    finally:
        await cancel_and_wait(task)


async def refuse_writes(client: Redis) -> None:
    """Make the server a replica of nothing: it answers READONLY to every write."""
    await client.replicaof("127.0.0.1", 1)


async def accept_writes(client: Redis) -> None:
    await client.replicaof("NO", "ONE")


async def test_a_schedule_host_refusing_writes_is_logged_once_waited_out_and_fires_after(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = own_redis_server.url
    admin = Redis.from_url(url)
    with project(url, {"sweep": {**SWEEP, "every_s": 60}}) as schedules:
        sweep = schedules["sweep"]
        await refuse_writes(admin)
        with caplog.at_level(logging.INFO, logger="worker"):
            async with read_only_host(sweep, None) as (loop, hosts, task):
                await wait_until(lambda: hosts.stats.redis_errors >= 3, 10.0, "refused claims")
                assert not task.done()  # waited out, not a crash loop of the worker's supervisor
                assert "refuses the worker's commands: ReadOnlyError" in str(hosts.problem())
                assert loop.problem() is None  # the host's outage is the reason, said once
                warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
                assert len(warnings) == 1
                assert (
                    "Redis host 0 refuses the worker's commands for schedule 'sweep'"
                    in (warnings[0])
                )
                await accept_writes(admin)
                await wait_until(lambda: hosts.problem() is None, 5.0, "the host to be back")
                assert "Redis host 0 is back for schedule 'sweep'" in caplog.text
                assert isinstance(loop.clock, ManualClock)
                await loop.clock.set(T0 + 60)
                await wait_for_state(admin, sweep, last_tick=repr(T0 + 60), last_worker="a")
    await admin.aclose()


async def test_a_tick_whose_fired_mark_is_refused_is_marked_later_and_never_sent_again(
    own_redis_server: RedisServer,
) -> None:
    url = own_redis_server.url
    admin = Redis.from_url(url)
    sent: list[float] = []

    async def send_then_refuse(schedule: Schedule, tick_s: float) -> Fired:
        sent.append(tick_s)
        await refuse_writes(admin)  # a failover right after the send: the mark is refused
        return Fired("sent")

    with project(url, {"sweep": {**SWEEP, "every_s": 60}}) as schedules:
        sweep = schedules["sweep"]
        async with read_only_host(sweep, send_then_refuse) as (loop, hosts, _task):
            await wait_for_state(admin, sweep, first_seen=repr(T0 + 1))
            assert isinstance(loop.clock, ManualClock)
            await loop.clock.set(T0 + 60)
            await wait_until(lambda: hosts.stats.redis_errors >= 2, 10.0, "a refused mark")
            await accept_writes(admin)
            done = await wait_for_state(admin, sweep, last_tick=repr(T0 + 60))
            assert (done["last_worker"], done["last_outcome"]) == ("a", "sent")
            assert sent == [T0 + 60]
    await admin.aclose()


async def test_a_tick_waiting_for_its_jitter_is_not_due_yet(redis_url: str, redis: Redis) -> None:
    with project(redis_url, {"sweep": {**SWEEP, "every_s": 60, "jitter_s": 50}}) as schedules:
        sweep = schedules["sweep"]
        layer = load_layer("default")
        ticks_s = range(int(T0), int(T0) + 6000, 60)
        tick_s = next(t_s for t_s in ticks_s if fire_at(sweep, t_s) > t_s + 2)
        fire_s = fire_at(sweep, tick_s)
        # First served at the tick before: only ``tick_s`` can be due.
        await TickClaims(redis, layer.prefix, sweep, LEASE_S, 60).register(tick_s - 60)
        [waiting] = await gather(layer, [redis], [sweep], tick_s + 1)
        [late] = await gather(layer, [redis], [sweep], fire_s + 1)
        assert (waiting.due, late.due) == (False, True)


def recording_send(
    sent: list[tuple[str, float]], worker_id: str
) -> Callable[[Schedule, float], Awaitable[Fired]]:
    async def send(schedule: Schedule, tick_s: float) -> Fired:
        sent.append((worker_id, tick_s))
        return Fired("sent")

    return send


async def test_workers_with_more_layer_hosts_claim_a_tick_in_the_same_place(
    redis_url: str, redis: Redis
) -> None:
    """A deploy that adds a host: old and new workers side by side still fire each tick once."""
    # A name that channels-redis's hash puts on host 1 of two but on host 2 of three.
    name = next(
        f"s{n}"
        for n in range(100)
        if (crc32(f"s{n}".encode()) % 2, crc32(f"s{n}".encode()) % 3) == (1, 2)
    )
    schedule = Schedule(
        name=name, channel=CHANNEL, message={"type": "sweep.run"}, every_s=60.0, digest="d"
    )
    hosts = [f"{redis_url.rsplit('/', 1)[0]}/{db}" for db in range(3)]
    sent: list[tuple[str, float]] = []
    clock = RecordingClock(T0 + 1)
    tasks = [
        asyncio.create_task(
            ScheduleLoop(
                schedule, RedisChannelLayer(hosts=hosts[:count]), f"{count} hosts", clock=clock,
                lease_s=LEASE_S, send=recording_send(sent, f"{count} hosts"),
            ).run()
        )
        for count in (2, 3)
    ]  # fmt: skip
    try:
        await wait_until(lambda: clock.waits_s.count(T0 + 60) == 2, 5.0, "both loops waiting")
        await clock.set(T0 + 60)
        await wait_until(lambda: bool(sent), 5.0, "the tick")
        # A loop that found the claim held checks again after a fifth of a lease.
        await clock.set(T0 + 60 + LEASE_S / 2)
        await wait_until(lambda: clock.waits_s.count(T0 + 120) == 2, 5.0, "both past the tick")
        assert [tick_s for _, tick_s in sent] == [T0 + 60]
        # On the first host, where `channel-worker schedules` reads it whatever the host list.
        assert await redis.exists(schedule_state_key("asgi", name, "d"))
    finally:
        for task in tasks:
            await cancel_and_wait(task)


@pytest.mark.parametrize(("jitter_s", "late_s"), [(0, 7.0), (50, 3.0)], ids=["tick", "jitter"])
async def test_a_tick_fired_late_records_how_late_in_the_lateness_metric(
    redis_url: str, redis: Redis, jitter_s: int, late_s: float
) -> None:
    """Lateness runs from the tick plus its jitter: the jitter is on purpose, not late."""
    definition = {**SWEEP, "every_s": 60, "jitter_s": jitter_s}
    with project(redis_url, {"sweep": definition}) as schedules:
        sweep = schedules["sweep"]
        # A tick with a jitter of at least half its bound, so "from the tick" would differ.
        ticks_s = (float(t_s) for t_s in range(int(T0) + 60, int(T0) + 6000, 60))
        tick_s = next(t_s for t_s in ticks_s if fire_at(sweep, t_s) >= t_s + jitter_s / 2)
        fire_s = fire_at(sweep, tick_s)
        clock = ManualClock(tick_s - 59)
        async with replicas(sweep, clock) as running:
            running.start("a")
            await wait_for_state(redis, sweep, first_seen=repr(tick_s - 59))
            # The loop gets to the tick ``late_s`` after its time (a slow host, a long GC).
            await clock.set(fire_s + late_s)
            await wait_for_state(redis, sweep, last_tick=repr(tick_s), last_outcome="sent")
            assert running.count("schedule_fires_total", "sweep") == 1
            assert running.count("schedule_lateness_seconds_count", "sweep") == 1
            lateness_s = running.count("schedule_lateness_seconds_sum", "sweep")
            assert lateness_s == pytest.approx(late_s, abs=0.01)


#: 03:00 on 1 January: a schedule that does not tick while a test runs on the system clock.
YEARLY = "0 3 1 1 *"
#: A schedule on each kind of channel the schedules project serves.
ON_EACH_CHANNEL = {
    "sweep": {**SWEEP, "cron": YEARLY},
    "thumbnails": {
        "channel": "thumbnails-generate",
        "message": {"type": "thumbnails.generate", "id": 1},
        "cron": YEARLY,
    },
    # Tasks on the queues ``default`` and ``slow``: the channels tasks.default, tasks.slow.
    "sum": {"task": "tests.worker.tasks_project.tasks.add", "args": [1, 2], "cron": YEARLY},
    "slow-tick": {"task": "tests.worker.schedules_project.tasks.tick", "cron": YEARLY},
}
#: The names of their loops, as the worker names the task of each.
LOOP_NAMES = {f"Schedule {name!r}" for name in ON_EACH_CHANNEL}


async def registered(redis: Redis, schedule: Schedule) -> bool:
    """Whether a loop of ``schedule`` has started: it notes when it was first served."""
    return bool(await redis.exists(schedule_state_key("asgi", schedule.name, schedule.digest)))


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        ((CHANNEL,), {"sweep"}),
        (("tasks.default",), {"sum"}),
        (("thumbnails-generate", "tasks.slow"), {"thumbnails", "slow-tick"}),
    ],
    ids=["a-channel", "a-task-queue", "a-channel-and-a-task-queue"],
)
async def test_a_runworker_runs_the_schedules_of_the_channels_it_serves_and_no_others(
    redis_url: str, redis: Redis, channels: tuple[str, ...], expected: set[str]
) -> None:
    """``runworker CHANNEL...`` as built from the settings: a loop per schedule it serves."""
    with (
        schedule_settings(redis_url, ON_EACH_CHANNEL),
        override_settings(TASKS=schedules_project.TASKS),
    ):
        from django.conf import settings

        schedules = project_schedules(settings.CHANNEL_WORKER)
        assert {schedules[name].channel for name in expected} == set(channels)
        worker = build_worker(WorkerOptions(channels=channels))
        async with running(worker):
            for name in sorted(expected):
                started = partial(registered, redis, schedules[name])
                await wait_until(started, 5.0, f"the loop of {name!r} to start")
            # The worker starts all its schedule loops at once, each a task named after it.
            names = {task.get_name() for task in asyncio.all_tasks()} & LOOP_NAMES
            assert names == {f"Schedule {name!r}" for name in expected}
            for name in sorted(ON_EACH_CHANNEL.keys() - expected):
                assert not await registered(redis, schedules[name]), f"{name!r} ran"
