"""Script calls of one turn of the loop, one round trip per host (``transport/batch.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from tests.faults.proxy import FaultProxy
from tests.redis_server import RedisServer
from worker.transport.batch import ScriptBatch
from worker.transport.scripts import STORE_RESULT, server_reads_flags

#: store_result.lua's reply for a result it replaced, the record it stored before.
NEW, FIRST = "record-1", "record-2"


class CountingRedis(Redis):
    """A real client that counts the pipelines it sends."""

    pipelines = 0

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        type(self).pipelines += 1
        return super().pipeline(transaction, shard_hint)


@pytest.fixture
def counting() -> type[CountingRedis]:
    CountingRedis.pipelines = 0
    return CountingRedis


def store(result_id: str, record: str, replaced: bool = False) -> tuple[list[Any], list[Any]]:
    keys = [f"result:{result_id}", "recent", f"progress:{result_id}"]
    return keys, [record, 60, result_id, 1.0, 100, int(replaced)]


async def test_calls_of_one_turn_go_in_one_pipeline_and_each_gets_its_reply(
    redis_url: str, counting: type[CountingRedis]
) -> None:
    client = counting.from_url(redis_url)
    batch = ScriptBatch([client])
    try:
        await batch.run(0, STORE_RESULT, *store("a", FIRST))
        assert counting.pipelines == 0  # alone in its turn: a plain call

        replies = await asyncio.gather(
            batch.run(0, STORE_RESULT, *store("a", NEW, replaced=True)),
            batch.run(0, STORE_RESULT, *store("b", NEW, replaced=True)),
            batch.run(0, STORE_RESULT, *store("c", NEW)),
        )

        assert counting.pipelines == 1
        assert list(replies) == [FIRST.encode(), None, None]
        assert await client.mget("result:a", "result:b", "result:c") == [NEW.encode()] * 3
        assert await client.zcard("recent") == 3
    finally:
        await client.aclose()


async def test_calls_made_while_a_round_trip_is_under_way_go_together_after_it(
    redis_server: RedisServer, counting: type[CountingRedis]
) -> None:
    with FaultProxy(redis_server.port) as proxy:
        client = counting.from_url(proxy.url)
        batch = ScriptBatch([client])
        try:
            await batch.run(0, STORE_RESULT, *store("first", FIRST))  # connected, flags known
            proxy.delay(0.2)
            slow = asyncio.ensure_future(batch.run(0, STORE_RESULT, *store("a", NEW)))
            await asyncio.sleep(0)
            await asyncio.sleep(0)  # its round trip is under way, and takes 0.2 s
            waiting = []
            for name in "bcd":  # one call per turn of the loop, as sync tasks end
                waiting.append(asyncio.ensure_future(batch.run(0, STORE_RESULT, *store(name, NEW))))
                await asyncio.sleep(0)
            assert not slow.done()
            assert counting.pipelines == 0

            proxy.heal()
            replies = await asyncio.gather(slow, *waiting)

            assert list(replies) == [None] * 4
            assert counting.pipelines == 1  # b, c and d: one round trip, after a's
            assert await client.mget(*(f"result:{name}" for name in "abcd")) == [NEW.encode()] * 4
        finally:
            proxy.heal()
            await client.aclose()


async def test_an_error_reply_fails_only_its_own_call(redis: Redis) -> None:
    batch = ScriptBatch([redis])
    await redis.set("recent", "a string, not the sorted set the script expects")
    keys, args = store("a", NEW)
    wrong = [keys[0], "recent", keys[2]]
    right = [keys[0], "other-recent", keys[2]]
    replies = await asyncio.gather(
        batch.run(0, STORE_RESULT, wrong, args),
        batch.run(0, STORE_RESULT, right, args),
        return_exceptions=True,
    )

    assert isinstance(replies[0], ResponseError)
    assert "WRONGTYPE" in str(replies[0])
    assert replies[1] is None
    assert await redis.zcard("other-recent") == 1


async def test_scripts_the_server_lost_are_sent_whole_again(redis: Redis) -> None:
    batch = ScriptBatch([redis])
    await batch.run(0, STORE_RESULT, *store("a", FIRST))
    sha = STORE_RESULT.sha(await server_reads_flags(redis))
    assert await redis.script_exists(sha) == [True]
    await redis.script_flush()
    assert await redis.script_exists(sha) == [False]

    replies = await asyncio.gather(
        batch.run(0, STORE_RESULT, *store("a", NEW, replaced=True)),
        batch.run(0, STORE_RESULT, *store("b", NEW)),
    )

    assert list(replies) == [FIRST.encode(), None]
    assert await redis.get("result:b") == NEW.encode()


async def test_a_connection_lost_mid_round_trip_fails_every_call_of_it(
    redis_server: RedisServer,
) -> None:
    with FaultProxy(redis_server.port) as proxy:
        client = Redis.from_url(proxy.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        batch = ScriptBatch([client])
        try:
            await batch.run(0, STORE_RESULT, *store("first", NEW))  # connected, flags known
            proxy.blackhole()
            replies = await asyncio.gather(
                *(batch.run(0, STORE_RESULT, *store(name, NEW)) for name in "abc"),
                return_exceptions=True,
            )

            assert all(isinstance(reply, ConnectionError | TimeoutError) for reply in replies)
            assert len({type(reply) for reply in replies}) == 1
        finally:
            proxy.heal()
            await client.aclose()


async def test_a_caller_that_stops_waiting_in_its_turn_writes_nothing(redis: Redis) -> None:
    batch = ScriptBatch([redis])
    gone = asyncio.ensure_future(batch.run(0, STORE_RESULT, *store("a", NEW)))
    kept = asyncio.ensure_future(batch.run(0, STORE_RESULT, *store("b", NEW)))
    await asyncio.sleep(0)  # both queued for the same turn
    gone.cancel()

    assert await kept is None
    assert gone.cancelled()
    assert await redis.get("result:b") == NEW.encode()
    assert await redis.exists("result:a") == 0


async def test_close_waits_for_the_round_trips_under_way(redis: Redis) -> None:
    batch = ScriptBatch([redis])
    calls = [asyncio.ensure_future(batch.run(0, STORE_RESULT, *store(n, NEW))) for n in "ab"]
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the round trip has started
    for call in calls:
        call.cancel()  # its callers stop waiting; the writes already sent still land

    await batch.aclose()

    assert await redis.mget("result:a", "result:b") == [NEW.encode()] * 2


async def test_close_waits_for_calls_made_in_its_turn(redis: Redis) -> None:
    batch = ScriptBatch([redis])
    call = asyncio.ensure_future(batch.run(0, STORE_RESULT, *store("late", NEW)))
    await asyncio.sleep(0)  # queued, to be sent at the end of this turn

    await batch.aclose()

    assert await redis.get("result:late") == NEW.encode()  # written before aclose() returned
    assert await call is None


async def test_a_round_trip_cancelled_before_its_first_step_cancels_its_calls(
    redis: Redis,
) -> None:
    batch = ScriptBatch([redis])
    await batch.run(0, STORE_RESULT, *store("first", NEW))  # connected, flags known
    call = asyncio.ensure_future(batch.run(0, STORE_RESULT, *store("a", NEW)))
    await asyncio.sleep(0)  # queued; its round trip starts at the end of this turn
    # Cancelled in the turn it is made (a cancelled aclose() cancels the round trips it waits
    # for): its coroutine never runs, so only the batch can tell the caller.
    asyncio.get_running_loop().call_soon(lambda: batch._sending[0].cancel())

    done, _ = await asyncio.wait({call}, timeout=5.0)

    assert call in done
    assert call.cancelled()


async def test_calls_behind_a_round_trip_cancelled_before_its_first_step_are_cancelled(
    redis: Redis,
) -> None:
    batch = ScriptBatch([redis])
    await batch.run(0, STORE_RESULT, *store("first", NEW))
    ahead = asyncio.ensure_future(batch.run(0, STORE_RESULT, *store("a", NEW)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # a's round trip is under way
    behind = asyncio.ensure_future(batch.run(0, STORE_RESULT, *store("b", NEW)))
    await asyncio.sleep(0)  # b waits for it
    # a's round trip starts b's as it ends; the next callback cancels that one at once.
    batch._sending[0].add_done_callback(lambda _: batch._sending[0].cancel())

    assert await ahead is None
    done, _ = await asyncio.wait({behind}, timeout=5.0)

    assert behind in done
    assert behind.cancelled()


def test_a_batch_serves_only_the_loop_it_was_first_used_on(redis_url: str) -> None:
    async def first_use() -> ScriptBatch:
        client = Redis.from_url(redis_url)
        batch = ScriptBatch([client])
        await batch.run(0, STORE_RESULT, *store("a", NEW))
        await client.aclose()
        return batch

    batch = asyncio.run(first_use())

    with pytest.raises(RuntimeError, match="only on the event loop it was first used on"):
        asyncio.run(batch.run(0, STORE_RESULT, *store("b", NEW)))


async def test_calls_to_two_hosts_go_to_each_host(redis_url: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    first, second = Redis.from_url(f"{base}/0"), Redis.from_url(f"{base}/1")
    batch = ScriptBatch([first, second])
    try:
        await asyncio.gather(
            batch.run(0, STORE_RESULT, *store("a", NEW)),
            batch.run(1, STORE_RESULT, *store("b", NEW)),
            batch.run(1, STORE_RESULT, *store("c", NEW)),
        )

        assert await first.keys("result:*") == [b"result:a"]
        assert sorted(await second.keys("result:*")) == [b"result:b", b"result:c"]
    finally:
        await first.aclose()
        await second.aclose()
