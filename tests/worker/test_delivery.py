"""Delivery guarantees of the in-process ``Worker`` on a real redis-server: leases and heartbeats,
redelivery of expired leases, retries, timeouts, dead letters and what a stop gives back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from channels.consumer import SyncConsumer
from channels.utils import await_many_dispatch
from channels_redis.core import RedisChannelLayer

from routing.types import ASGIApp, Message, Receive, Scope, Send
from tests.worker._inprocess import (
    cancel_and_wait,
    channel_app,
    make_worker,
    raw_member,
    running,
    wait_until,
)
from worker.config import AT_LEAST_ONCE, AT_MOST_ONCE, DELIVERY_MODES, ChannelConfig
from worker.consume import maintenance
from worker.consume.worker import Worker
from worker.errors import PermanentFailure
from worker.transport.dead_letters import DeadLetter, DeadLetterBounds, DeadLetters
from worker.transport.keys import ChannelKeys
from worker.transport.queue import ChannelQueue, Promoted

CHANNEL = "jobs"
# Task channels want a long layer expiry; the worker warns below 600 s.
EXPIRY_S = 3600

Handler = Callable[[Message], Awaitable[None]]


class PoisonError(RuntimeError):
    """A handler that can never succeed with this message."""


class FlakyError(RuntimeError):
    """A handler failure that goes away when retried."""


@pytest.fixture
async def dead_letters(layer: RedisChannelLayer) -> AsyncIterator[DeadLetters]:
    store = DeadLetters(layer)
    yield store
    await store.aclose()


def retrying(**options: Any) -> ChannelConfig:
    """A config whose retries come back fast: due after 50-100 ms, moved back on the next
    maintenance tick (every lease_s / 3)."""
    fast = {"lease_s": 0.6, "retry_backoff_min_s": 0.05, "retry_backoff_max_s": 0.1}
    return ChannelConfig(**(fast | options))


def handler_app(handle: Handler) -> ASGIApp:
    """A root application whose ``jobs`` instances await ``handle(message)`` per message."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            await handle(await receive())

    return channel_app({CHANNEL: application})


def consume(
    application: ASGIApp, layer: RedisChannelLayer, config: ChannelConfig, **options: Any
) -> Worker:
    """A worker for ``jobs``; a short shutdown timeout, so a failed test does not wait on a
    handler it left blocked."""
    options.setdefault("shutdown_timeout_s", 1.0)
    return make_worker(application, [CHANNEL], layer, config, **options)


def keys(layer: RedisChannelLayer) -> ChannelKeys:
    return ChannelKeys.for_channel(layer.prefix, CHANNEL)


async def count(layer: RedisChannelLayer, key: str) -> int:
    """Members of a sorted set (or fields of a hash) in Redis; 0 when the key does not exist."""
    redis = layer.connection(0)
    kind = (await redis.type(key)).decode()
    size: int = await (redis.hlen(key) if kind == "hash" else redis.zcard(key))
    return size


async def queued(layer: RedisChannelLayer) -> list[tuple[dict[str, Any], float]]:
    """The channel's waiting messages, decoded, with their scores, head first."""
    members = await layer.connection(0).zrange(keys(layer).queue, 0, -1, withscores=True)
    return [(layer.deserialize(member), score) for member, score in members]


async def send_ids(layer: RedisChannelLayer, *ids: str, **fields: Any) -> None:
    for message_id in ids:
        await layer.send(CHANNEL, {"type": "job.run", "id": message_id, **fields})


async def no_leases_or_attempts(layer: RedisChannelLayer) -> bool:
    """Nothing of the worker's per-message bookkeeping is left in Redis."""
    names = keys(layer)
    sizes = [
        await count(layer, key) for key in (names.inflight, names.attempts, names.first_attempt)
    ]
    return sizes == [0, 0, 0]


# At-least-once: leases, heartbeats, redelivery


@pytest.mark.redis
async def test_at_least_once_lease_is_held_in_redis_and_extended_by_heartbeats_while_handling(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer
) -> None:
    attempts: list[int] = []

    async def handle(message: Message) -> None:
        attempts.append(message["__attempt__"])
        await asyncio.sleep(3.0)  # twice the lease

    config = ChannelConfig(concurrency=1, lease_s=1.5)
    worker = consume(handler_app(handle), worker_layer, config)
    redis = layer.connection(0)
    samples: list[tuple[float, list[tuple[bytes, float]]]] = []
    async with running(worker):
        await send_ids(layer, "slow")
        await wait_until(lambda: bool(attempts), what="the handler started")
        while worker.stats.completed == 0:
            samples.append(
                (time.time(), await redis.zrange(keys(layer).inflight, 0, -1, withscores=True))
            )
            await asyncio.sleep(0.1)
        await wait_until(lambda: no_leases_or_attempts(layer), what="the lease was released")

    assert len(samples) >= 20
    assert all(len(leases) == 1 for _, leases in samples)
    [(member, first_deadline)] = samples[0][1]
    assert layer.deserialize(member) == {"type": "job.run", "id": "slow"}
    # Every lease deadline seen was in the future, also after the first one had passed...
    assert all(leases[0][1] > seen_at for seen_at, leases in samples)
    assert any(seen_at > first_deadline + 0.5 for seen_at, _ in samples)
    # ...because heartbeats kept pushing it forward.
    deadlines = [leases[0][1] for _, leases in samples]
    assert deadlines == sorted(deadlines)
    assert deadlines[-1] > first_deadline + 1.0
    assert attempts == [1]
    assert worker.stats.redelivered == 0
    assert (worker.stats.received, worker.stats.completed) == (1, 1)


@pytest.mark.redis
async def test_expired_lease_of_a_dead_worker_is_requeued_at_the_head_and_handled_as_attempt_2(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer
) -> None:
    gate = asyncio.Event()
    started: list[str] = []
    handled: list[tuple[str, int]] = []

    async def handle(message: Message) -> None:
        started.append(message["id"])
        await gate.wait()
        handled.append((message["id"], message["__attempt__"]))

    config = ChannelConfig(concurrency=1, prefetch=1, lease_s=3.0)
    worker = consume(handler_app(handle), worker_layer, config)
    names = keys(layer)
    redis = layer.connection(0)
    await send_ids(layer, "first", "second", "third")
    async with running(worker):
        # "first" runs and "second" is prefetched, so "third" and the orphan stay in Redis.
        await wait_until(lambda: started == ["first"], what="'first' started")
        await wait_until(
            lambda: _equals(count(layer, names.queue), 1), what="only 'third' left queued"
        )
        orphan = layer.serialize({"type": "job.run", "id": "orphan"})
        # As a worker that died mid-handler leaves it: a lease whose deadline has passed.
        await redis.zadd(names.inflight, {orphan: time.time() - 5})
        await wait_until(lambda: worker.stats.redelivered == 1, what="the orphan redelivered")

        waiting = await queued(layer)
        now = time.time()
        assert [message["id"] for message, _ in waiting] == ["orphan", "third"]
        (_, orphan_score), (_, third_score) = waiting
        # At the head, and inside the window that senders' expiry trimming keeps.
        assert int(now) - EXPIRY_S < orphan_score < third_score
        assert await redis.zscore(names.inflight, orphan) is None
        assert await redis.hget(names.attempts, orphan) == b"1"

        gate.set()
        await wait_until(lambda: len(handled) == 4, what="all four handled")
        await wait_until(lambda: no_leases_or_attempts(layer), what="settled")
    assert handled == [("first", 1), ("second", 1), ("orphan", 2), ("third", 1)]
    assert worker.stats.redelivered == 1
    assert worker.stats.completed == 4


@asynccontextmanager
async def watching(watch: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``watch`` in the background for the block, then cancel it and wait for it."""
    task = asyncio.create_task(watch)
    try:
        yield
    finally:
        await cancel_and_wait(task)
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


# Retries and dead letters


@pytest.mark.redis
async def test_failing_handler_is_retried_from_the_delayed_set_and_succeeds_on_attempt_3(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer
) -> None:
    failed_at: dict[int, float] = {}
    started_at: dict[int, float] = {}

    async def handle(message: Message) -> None:
        attempt = message["__attempt__"]
        started_at[attempt] = time.time()
        if attempt < 3:
            failed_at[attempt] = time.time()
            raise FlakyError(f"the mail server hung up on attempt {attempt}")

    config = retrying(concurrency=1, max_attempts=5)
    worker = consume(handler_app(handle), worker_layer, config)
    names = keys(layer)
    redis = layer.connection(0)
    # (due time, attempts recorded so far) of the message while it waits in the delayed set.
    waiting: set[tuple[float, int]] = set()

    async def watch_delayed() -> None:
        while True:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.zrange(names.delayed, 0, -1, withscores=True)
                pipe.hvals(names.attempts)
                delayed, recorded = await pipe.execute()
            if delayed:
                waiting.add((delayed[0][1], int(recorded[0])))
            await asyncio.sleep(0.002)

    async with watching(watch_delayed()), running(worker):
        await send_ids(layer, "mail")
        await wait_until(lambda: worker.stats.completed == 1, what="handled on attempt 3")
        await wait_until(lambda: no_leases_or_attempts(layer), what="attempts cleaned")

    assert sorted(started_at) == [1, 2, 3]
    due = {attempts: due_at for due_at, attempts in waiting}
    assert sorted(due) == [1, 2], f"seen in the delayed set: {waiting}"
    for attempt in (1, 2):
        # Held back for at least retry_backoff_min_s after the failure, then handled again.
        assert due[attempt] >= failed_at[attempt] + 0.05
        assert started_at[attempt + 1] >= due[attempt]
    assert await count(layer, names.delayed) == 0
    stats = worker.stats
    assert (stats.failed, stats.retried, stats.completed, stats.dead) == (2, 2, 1, 0)


@pytest.mark.redis
async def test_poison_message_is_dead_lettered_after_max_attempts_with_its_failure_record(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, dead_letters: DeadLetters
) -> None:
    tried_at: list[float] = []
    done: list[str] = []

    async def handle(message: Message) -> None:
        if message["id"] == "poison":
            tried_at.append(time.time())
            raise PoisonError("cannot parse the invoice")
        done.append(message["id"])

    config = retrying(concurrency=2, max_attempts=3)
    worker = consume(handler_app(handle), worker_layer, config)
    others = [f"m{number}" for number in range(10)]
    before = time.time()
    async with running(worker):
        await send_ids(layer, *others[:5], "poison", *others[5:])
        await wait_until(
            lambda: worker.stats.dead == 1 and len(done) == 10, what="poison dead, others done"
        )

    [letter] = await dead_letters.list(CHANNEL)
    assert letter.reason == "failed 3 attempt(s); last: PoisonError: cannot parse the invoice"
    assert (letter.error_type, letter.error) == ("PoisonError", "cannot parse the invoice")
    assert letter.traceback is not None
    assert letter.traceback.startswith("Traceback (most recent call last):")
    assert "in handle" in letter.traceback
    assert "PoisonError: cannot parse the invoice" in letter.traceback
    assert letter.attempts == 3
    assert letter.first_attempt_at is not None
    assert letter.last_attempt_at is not None
    assert before <= letter.first_attempt_at <= tried_at[0]
    assert tried_at[1] < letter.last_attempt_at <= tried_at[2]
    assert letter.worker_id == worker.worker_id
    assert (letter.channel, letter.message_type, letter.message_id) == (
        CHANNEL,
        "job.run",
        "poison",
    )
    assert sorted(done) == sorted(others)
    stats = worker.stats
    assert (stats.failed, stats.retried, stats.dead, stats.completed) == (3, 2, 1, 10)
    assert await no_leases_or_attempts(layer)


@pytest.mark.redis
async def test_a_retry_starts_when_its_delay_is_up_not_at_the_next_maintenance_round(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rounds every 10 s (a 30 s lease, a third of it); each retry is due 0.2 s after its failure.
    monkeypatch.setattr(maintenance, "MAINTENANCE_INTERVAL_S", 10.0)
    delay_s = 0.2
    started_at: dict[int, float] = {}

    async def handle(message: Message) -> None:
        attempt = message["__attempt__"]
        started_at[attempt] = time.monotonic()
        if attempt < 4:
            raise FlakyError(f"attempt {attempt}")

    config = ChannelConfig(
        concurrency=1, max_attempts=5, retry_backoff_min_s=delay_s, retry_backoff_max_s=delay_s
    )
    worker = consume(handler_app(handle), worker_layer, config)
    async with running(worker):
        await send_ids(layer, "mail")
        await wait_until(lambda: worker.stats.completed == 1, what="handled on attempt 4")

    gaps_s = [started_at[n + 1] - started_at[n] for n in (1, 2, 3)]
    # Each after its delay, and long before the next round would have moved it.
    assert all(delay_s <= gap_s < delay_s + 2.0 for gap_s in gaps_s), gaps_s


@pytest.mark.redis
async def test_promotion_says_when_the_earliest_waiting_message_is_due(
    layer: RedisChannelLayer,
) -> None:
    queue = ChannelQueue(layer.connection(0), keys(layer), int(layer.expiry))
    redis = layer.connection(0)
    now = time.time()
    await redis.zadd(keys(layer).delayed, {raw_member({"type": "a"}): now - 1})
    assert await queue.promote_due() == Promoted(count=1, next_due_at=None)
    later = [raw_member({"type": "b"}), raw_member({"type": "c"})]
    await redis.zadd(keys(layer).delayed, {later[0]: now + 60, later[1]: now + 30})
    promoted = await queue.promote_due()
    assert promoted.count == 0
    assert promoted.next_due_at == pytest.approx(now + 30, abs=0.001)


@pytest.mark.redis
async def test_permanent_failure_is_dead_lettered_on_its_first_attempt_without_retries(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, dead_letters: DeadLetters
) -> None:
    class InvoiceGone(PermanentFailure):
        """The invoice a message names was deleted: no retry brings it back."""

    async def handle(message: Message) -> None:
        if message["id"] == "gone":
            raise InvoiceGone("invoice 7 was deleted")

    worker = consume(handler_app(handle), worker_layer, retrying(max_attempts=5))
    async with running(worker):
        await send_ids(layer, "gone", "kept")
        await wait_until(
            lambda: worker.stats.dead == 1 and worker.stats.completed == 1, what="gone dead"
        )

    [letter] = await dead_letters.list(CHANNEL)
    assert letter.reason == ("failed permanently on attempt 1: InvoiceGone: invoice 7 was deleted")
    assert (letter.attempts, letter.message_id) == (1, "gone")
    stats = worker.stats
    assert (stats.failed, stats.retried, stats.dead) == (1, 0, 1)
    assert await no_leases_or_attempts(layer)


@pytest.mark.redis
async def test_async_handler_past_the_message_timeout_is_cancelled_retried_then_dead_lettered(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, dead_letters: DeadLetters
) -> None:
    # (attempt, how many other messages were done when it was cancelled)
    cancelled: list[tuple[int, int]] = []
    done: list[str] = []

    async def handle(message: Message) -> None:
        if message["id"] == "stuck":
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append((message["__attempt__"], len(done)))
                raise
        await asyncio.sleep(0.05)
        done.append(message["id"])

    config = retrying(concurrency=2, max_attempts=2, message_timeout_s=0.3)
    worker = consume(handler_app(handle), worker_layer, config)
    others = [f"m{number}" for number in range(10)]
    async with running(worker):
        await send_ids(layer, "stuck", *others)
        await wait_until(
            lambda: worker.stats.dead == 1 and len(done) == 10,
            what="stuck one dead, others done",
        )

    assert [attempt for attempt, _ in cancelled] == [1, 2]
    # The other slot kept handling messages while the stuck one ran.
    assert cancelled[0][1] > 0
    assert sorted(done) == sorted(others)
    stats = worker.stats
    assert (stats.timed_out, stats.failed, stats.retried, stats.dead) == (2, 2, 1, 1)
    [letter] = await dead_letters.list(CHANNEL)
    assert letter.message_id == "stuck"
    assert letter.error_type == "HandlerTimeout"
    assert letter.reason == (
        "failed 2 attempt(s); last: HandlerTimeout: handler ran longer than "
        "message_timeout_s=0.3 and was cancelled"
    )


class SleepySyncConsumer(SyncConsumer):  # type: ignore[misc]  # channels is untyped
    def __init__(self, finished: list[str]) -> None:
        self.finished = finished

    def job_run(self, message: Message) -> None:
        time.sleep(float(message["sleep_s"]))
        self.finished.append(message["id"])


@pytest.mark.redis
async def test_sync_handler_past_the_message_timeout_is_abandoned_to_its_thread_and_counted_failed(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, dead_letters: DeadLetters
) -> None:
    finished: list[str] = []
    application = channel_app({CHANNEL: SleepySyncConsumer.as_asgi(finished=finished)})
    config = ChannelConfig(concurrency=1, max_attempts=1, message_timeout_s=0.2)
    worker = consume(application, worker_layer, config)
    async with running(worker):
        await send_ids(layer, "slow", sleep_s=1.0)
        await wait_until(lambda: worker.stats.dead == 1, what="the sync handler timed out")
        stats = worker.stats
        assert (stats.timed_out, stats.failed, stats.completed) == (1, 1, 0)
        # A thread cannot be stopped: the handler was given up on, not interrupted...
        assert finished == []
        await wait_until(lambda: finished == ["slow"], what="the abandoned thread finished")
        # ...and once its thread is free, the channel's next sync handler runs.
        await send_ids(layer, "quick", sleep_s=0)
        await wait_until(lambda: worker.stats.completed == 1, what="'quick' handled")
    assert finished == ["slow", "quick"]
    [letter] = await dead_letters.list(CHANNEL)
    assert (letter.message_id, letter.error_type) == ("slow", "HandlerTimeout")


@pytest.mark.redis
async def test_a_stop_longer_than_the_message_timeout_times_out_no_handler_that_was_running(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer
) -> None:
    started: set[str] = set()
    done: list[str] = []

    async def handle(message: Message) -> None:
        started.add(message["id"])
        if message["id"] == "stuck":
            await asyncio.Event().wait()
        await asyncio.sleep(0.2)
        done.append(message["id"])

    config = ChannelConfig(concurrency=2, max_attempts=1, message_timeout_s=0.5)
    worker = consume(handler_app(handle), worker_layer, config)
    async with running(worker):
        await send_ids(layer, "quick", "stuck")
        await wait_until(lambda: started == {"quick", "stuck"}, what="both handlers running")
        # The process is stopped (SIGSTOP) for longer than the timeout: its loop runs nothing
        # (blocking it is the fault here, not a wait)...
        time.sleep(1.0)  # noqa: ASYNC251
        # ...until the kernel continues it, delivering SIGCONT.
        os.kill(os.getpid(), signal.SIGCONT)
        continued_s = time.monotonic()
        await wait_until(lambda: worker.stats.timed_out >= 1, what="the stuck handler timed out")
        timed_out_after_s = time.monotonic() - continued_s
    assert done == ["quick"]
    stats = worker.stats
    assert (stats.completed, stats.failed, stats.timed_out, stats.dead) == (1, 1, 1, 1)
    # The stuck one had its whole timeout again after the SIGCONT.
    assert timed_out_after_s >= 0.5


def consumer_losing_its_layer(handled: list[str]) -> ASGIApp:
    """Channels' consumer loop (``await_many_dispatch`` over the worker's ``receive`` and the
    consumer's own channel-layer receive) whose channel-layer receive fails while a handler
    runs, as when Redis drops the connection: the handler returns, then the instance dies."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        connection: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        async def channel_receive() -> Message:
            return await connection

        async def dispatch(message: Message) -> None:
            connection.set_exception(ConnectionError("Connection closed by server."))
            await asyncio.sleep(0.01)
            handled.append(message["id"])

        await await_many_dispatch([receive, channel_receive], dispatch)

    return channel_app({CHANNEL: application})


@pytest.mark.redis
@pytest.mark.parametrize("delivery", DELIVERY_MODES)
async def test_message_whose_handler_returned_is_completed_even_if_its_consumer_dies_right_after(
    layer: RedisChannelLayer,
    worker_layer: RedisChannelLayer,
    dead_letters: DeadLetters,
    delivery: str,
) -> None:
    handled: list[str] = []
    config = retrying(concurrency=2, delivery=delivery, max_attempts=3)
    worker = consume(consumer_losing_its_layer(handled), worker_layer, config)
    async with running(worker):
        await send_ids(layer, "a", "b", "c")
        await wait_until(lambda: worker.stats.completed == 3, what="three handled")
        await wait_until(lambda: no_leases_or_attempts(layer), what="settled")
    # Each handled once: the instance's death is not the handler's failure.
    assert sorted(handled) == ["a", "b", "c"]
    stats = worker.stats
    assert (stats.completed, stats.failed, stats.retried, stats.dead) == (3, 0, 0, 0)
    assert await dead_letters.list(CHANNEL) == []


# Messages no handler can be given


@pytest.mark.redis
@pytest.mark.parametrize("delivery", DELIVERY_MODES)
async def test_invalid_members_are_dead_lettered_with_their_reason_and_the_worker_goes_on(
    layer: RedisChannelLayer,
    worker_layer: RedisChannelLayer,
    dead_letters: DeadLetters,
    delivery: str,
) -> None:
    done: list[str] = []

    async def handle(message: Message) -> None:
        done.append(message["id"])

    ten_mb = raw_member({"type": "job.run", "id": "huge", "blob": b"x" * (10 * 1024 * 1024)})
    members = [
        os.urandom(12) + b"\xc1",  # 0xc1 is never used by msgpack
        raw_member([1, 2, 3]),
        raw_member({"id": "typeless"}),
        ten_mb,  # over the default max_message_bytes of 1 MiB
    ]
    # As if sent before the good message, in this order.
    now = time.time()
    await layer.connection(0).zadd(
        keys(layer).queue, {member: now - 10 + index for index, member in enumerate(members)}
    )
    await send_ids(layer, "after")
    config = ChannelConfig(concurrency=1, delivery=delivery)
    worker = consume(handler_app(handle), worker_layer, config)
    async with running(worker):
        await wait_until(
            lambda: done == ["after"] and worker.stats.dead == 4,
            what="bad ones dead, 'after' handled",
        )
        await send_ids(layer, "later")
        await wait_until(lambda: done == ["after", "later"], what="still handling messages")

    letters = await dead_letters.list(CHANNEL)
    reasons = [letter.reason for letter in letters]
    assert reasons[0].startswith("message cannot be decoded by the layer's serializer")
    assert reasons[1].startswith("message is a list, not a dict")
    assert reasons[2].startswith("message has no str 'type' key (got None)")
    assert reasons[3] == (
        f"message is {len(ten_mb)} bytes, over the 1048576-byte limit "
        "(max_message_bytes / --max-message-bytes)"
    )
    assert [letter.size_bytes for letter in letters] == [len(member) for member in members]
    assert all(letter.attempts == 0 and letter.message_type is None for letter in letters)
    stats = worker.stats
    assert (stats.invalid, stats.dead, stats.failed, stats.completed) == (4, 4, 0, 2)
    assert await no_leases_or_attempts(layer)
    # The raw bytes are kept: an undecodable message shows as bytes.
    shown = await dead_letters.show(CHANNEL, letters[0].id)
    assert shown is not None
    assert shown.message == members[0]


# Stopping


@pytest.mark.redis
async def test_stop_under_at_least_once_gives_back_prefetched_and_cancelled_messages_unleased(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    started: list[str] = []

    async def handle(message: Message) -> None:
        started.append(message["id"])
        await asyncio.Event().wait()  # never finishes; cancelled by the shutdown timeout

    caplog.set_level(logging.INFO, logger="worker")
    config = ChannelConfig(concurrency=2, prefetch=2, delivery=AT_LEAST_ONCE)
    worker = consume(handler_app(handle), worker_layer, config, shutdown_timeout_s=0.3)
    names = keys(layer)
    await send_ids(layer, *(f"m{number}" for number in range(6)))
    async with running(worker):
        await wait_until(lambda: len(started) == 2, what="two handlers running")
        await wait_until(lambda: _equals(count(layer, names.queue), 2), what="two prefetched")
        assert await count(layer, names.inflight) == 4  # two running, two prefetched

    assert (worker.stats.cancelled, worker.stats.returned) == (2, 4)
    assert await count(layer, names.inflight) == 0
    order = [message["id"] for message, _ in await queued(layer)]
    # Cancelled ones first, then the prefetched in their order, ahead of the never-taken.
    assert sorted(order[:2]) == ["m0", "m1"]
    assert order[2:] == ["m2", "m3", "m4", "m5"]
    assert "Shutdown timeout of 0.3 s reached; cancelling 2 handler(s)" in caplog.text
    assert "Returned 4 message(s) to channel 'jobs'" in caplog.text


# Start-up


async def idle(message: Message) -> None:
    """A handler with nothing to do."""


@pytest.mark.redis
@pytest.mark.parametrize(("expiry_s", "warned"), [(60, True), (599, True), (600, False)])
async def test_worker_warns_at_start_when_the_layer_expiry_is_under_600_s(
    redis_url: str, caplog: pytest.LogCaptureFixture, expiry_s: int, warned: bool
) -> None:
    caplog.set_level(logging.INFO, logger="worker")
    worker_layer = RedisChannelLayer(hosts=[redis_url], expiry=expiry_s)
    worker = consume(handler_app(idle), worker_layer, ChannelConfig())
    try:
        async with running(worker):
            await wait_until(lambda: " consuming jobs " in caplog.text, what="the startup line")
    finally:
        await worker_layer.close_pools()
    warnings = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "expiry=" in record.getMessage()
    ]
    if not warned:
        assert warnings == []
        return
    [warning] = warnings
    assert f"expiry={expiry_s} s" in warning
    assert "'jobs'" in warning
    assert "'expiry': 3600" in warning


# The dead-letter store


@pytest.mark.redis
async def test_dead_letters_can_be_listed_shown_requeued_one_or_all_and_purged(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer, dead_letters: DeadLetters
) -> None:
    fixed = asyncio.Event()
    handled: list[tuple[str, int]] = []

    async def handle(message: Message) -> None:
        if not fixed.is_set():
            raise PoisonError(f"upstream down for {message['id']}")
        handled.append((message["id"], message["__attempt__"]))

    config = retrying(concurrency=1, max_attempts=2)
    worker = consume(handler_app(handle), worker_layer, config)
    names = keys(layer)
    async with running(worker):
        await send_ids(layer, "a", "b", "c")
        await wait_until(lambda: worker.stats.dead == 3, what="three dead letters")

        # Newest first: in the order their retries, each with its own jitter, failed.
        letters = await dead_letters.list(CHANNEL)
        assert set(_ids(letters)) == {"a", "b", "c"}
        assert await dead_letters.count(CHANNEL) == 3
        assert await dead_letters.list(CHANNEL, limit=1) == letters[:1]
        letter_a = next(letter for letter in letters if letter.message_id == "a")
        shown = await dead_letters.show(CHANNEL, letter_a.id)
        assert shown is not None
        # The message as it was sent: the worker's attempt number is not stored in it.
        assert shown.message == {"type": "job.run", "id": "a"}
        assert shown.reason == "failed 2 attempt(s); last: PoisonError: upstream down for a"
        assert shown.traceback is not None
        assert "PoisonError: upstream down for a" in shown.traceback
        assert await dead_letters.show(CHANNEL, "no-such-id") is None

        fixed.set()
        assert await dead_letters.requeue(CHANNEL, letter_a.id) == 1
        await wait_until(lambda: handled == [("a", 1)], what="'a' handled after its requeue")
        assert set(_ids(await dead_letters.list(CHANNEL))) == {"b", "c"}
        assert await dead_letters.requeue(CHANNEL, "no-such-id") == 0
        assert await dead_letters.requeue(CHANNEL) == 2
        await wait_until(lambda: len(handled) == 3, what="'b' and 'c' handled")
        # Fresh attempts: each is attempt 1 again, not 3.
        assert sorted(handled) == [("a", 1), ("b", 1), ("c", 1)]
        assert await dead_letters.list(CHANNEL) == []

        fixed.clear()
        await send_ids(layer, "d", "e")
        await wait_until(lambda: worker.stats.dead == 5, what="five dead letters")
        assert await dead_letters.purge(CHANNEL) == 2
        assert await dead_letters.list(CHANNEL) == []
        assert await dead_letters.count(CHANNEL) == 0
        assert await dead_letters.purge(CHANNEL) == 0
    redis = layer.connection(0)
    assert await redis.exists(names.dead, names.dead_records, names.dead_members) == 0


def _ids(letters: list[DeadLetter]) -> list[str | None]:
    return [letter.message_id for letter in letters]


@pytest.mark.redis
async def test_dead_letter_store_keeps_its_max_count_dropping_and_logging_the_oldest(
    layer: RedisChannelLayer,
    worker_layer: RedisChannelLayer,
    dead_letters: DeadLetters,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handle(message: Message) -> None:
        raise PoisonError(f"cannot handle {message['id']}")

    config = ChannelConfig(concurrency=1, max_attempts=1)
    worker = consume(
        handler_app(handle),
        worker_layer,
        config,
        dead_letter_bounds=DeadLetterBounds(max_count=3),
    )
    async with running(worker):
        await send_ids(layer, *(f"p{number}" for number in range(5)))
        await wait_until(lambda: worker.stats.dead == 5, what="five dead letters")

    assert worker.stats.dead_trimmed == 2
    assert _ids(await dead_letters.list(CHANNEL)) == ["p2", "p3", "p4"]
    trimmed = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "over their bound" in record.getMessage()
    ]
    assert trimmed == ["Dead letters of channel 'jobs' over their bound: 1 oldest removed"] * 2


# At-most-once


@pytest.mark.redis
async def test_at_most_once_still_retries_a_failing_handler_but_never_writes_a_lease(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer
) -> None:
    names = keys(layer)
    redis = layer.connection(0)
    # (attempt, whether the in-flight set existed while the handler ran)
    seen: list[tuple[int, int]] = []

    async def handle(message: Message) -> None:
        attempt = message["__attempt__"]
        seen.append((attempt, await redis.exists(names.inflight)))
        if attempt == 1:
            raise FlakyError("first try fails")

    leases_seen: list[int] = []

    async def watch_inflight() -> None:
        while True:
            leases_seen.append(await redis.exists(names.inflight))
            await asyncio.sleep(0.005)

    config = retrying(concurrency=2, delivery=AT_MOST_ONCE, max_attempts=3)
    worker = consume(handler_app(handle), worker_layer, config)
    async with watching(watch_inflight()), running(worker):
        await send_ids(layer, "once")
        await wait_until(lambda: worker.stats.completed == 1, what="handled on attempt 2")
        await wait_until(lambda: no_leases_or_attempts(layer), what="attempts cleaned")

    assert seen == [(1, 0), (2, 0)]
    assert len(leases_seen) > 20
    assert set(leases_seen) == {0}
    assert (worker.stats.failed, worker.stats.retried, worker.stats.dead) == (1, 1, 0)


async def test_redelivered_messages_are_counted_per_channel_and_type_in_metrics(
    layer: RedisChannelLayer, worker_layer: RedisChannelLayer
) -> None:
    from prometheus_client import CollectorRegistry

    from worker.ops.metrics import Metrics

    handled: list[str] = []

    async def handle(message: Message) -> None:
        handled.append(message["id"])

    registry = CollectorRegistry()
    worker = consume(
        handler_app(handle), worker_layer, ChannelConfig(lease_s=3.0), metrics=Metrics(registry)
    )
    async with running(worker):
        orphan = layer.serialize({"type": "job.orphaned", "id": "orphan"})
        await layer.connection(0).zadd(keys(layer).inflight, {orphan: time.time() - 5})
        await wait_until(lambda: handled == ["orphan"], what="the orphan redelivered and handled")

    labels = {"channel": CHANNEL, "type": "job.orphaned"}
    assert registry.get_sample_value("channel_worker_messages_redelivered_total", labels) == 1
    assert registry.get_sample_value("channel_worker_messages_completed_total", labels) == 1
