"""Script calls of one turn of the loop, one round trip per host (``transport/batch.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError

from worker.transport.batch import ScriptBatch
from worker.transport.scripts import STORE_RESULT

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


async def test_an_error_reply_fails_only_its_own_call(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    batch = ScriptBatch([client])
    try:
        await client.set("recent", "a string, not the sorted set the script expects")
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
        assert await client.zcard("other-recent") == 1
    finally:
        await client.aclose()


async def test_scripts_the_server_lost_are_sent_whole_again(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    batch = ScriptBatch([client])
    try:
        await batch.run(0, STORE_RESULT, *store("a", FIRST))
        await client.script_flush()
        assert await client.script_exists(STORE_RESULT.flagged_sha) == [False]

        replies = await asyncio.gather(
            batch.run(0, STORE_RESULT, *store("a", NEW, replaced=True)),
            batch.run(0, STORE_RESULT, *store("b", NEW)),
        )

        assert list(replies) == [FIRST.encode(), None]
        assert await client.get("result:b") == NEW.encode()
    finally:
        await client.aclose()


async def test_a_lost_connection_fails_every_call_of_the_round_trip() -> None:
    # Nothing listens on port 1.
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    batch = ScriptBatch([client])
    try:
        replies = await asyncio.gather(
            *(batch.run(0, STORE_RESULT, *store(name, NEW)) for name in "abc"),
            return_exceptions=True,
        )

        assert [type(reply) for reply in replies] == [ConnectionError] * 3
    finally:
        await client.aclose()


async def test_a_caller_that_stops_waiting_leaves_the_others_their_replies(
    redis_url: str,
) -> None:
    client = Redis.from_url(redis_url)
    batch = ScriptBatch([client])
    try:
        gone = asyncio.ensure_future(batch.run(0, STORE_RESULT, *store("a", NEW)))
        kept = asyncio.ensure_future(batch.run(0, STORE_RESULT, *store("b", NEW)))
        await asyncio.sleep(0)  # both queued for the same turn
        gone.cancel()

        assert await kept is None
        assert gone.cancelled()
        assert await client.get("result:b") == NEW.encode()
    finally:
        await client.aclose()


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
