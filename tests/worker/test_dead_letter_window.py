"""``DeadLetters.window``: one page of a channel's dead letters, newest first, across hosts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from channels_redis.core import RedisChannelLayer

from worker.transport.dead_letters import DeadLetter, DeadLetters

pytestmark = pytest.mark.redis

CHANNEL = "thumbnails-generate"


@pytest.fixture
async def two_hosts(redis_url: str) -> AsyncIterator[DeadLetters]:
    """A store on two layer hosts (two databases of the suite's redis-server)."""
    layer = RedisChannelLayer(hosts=[redis_url, redis_url.rsplit("/", 1)[0] + "/1"])
    store = DeadLetters(layer)
    yield store
    await store.aclose()


async def add(store: DeadLetters, count: int) -> list[DeadLetter]:
    """``count`` letters, oldest first, on alternating hosts."""
    now = time.time()
    letters = []
    for number in range(count):
        letter = DeadLetter(
            channel=CHANNEL,
            reason="failed",
            attempts=1,
            message_type="job.run",
            host_index=number % len(store.clients),
            dead_at=now + number,
        )
        await store.add(letter, store.layer.serialize({"type": "job.run", "n": number}))
        letters.append(letter)
    return letters


async def test_windows_of_two_hosts_page_through_every_letter_newest_first(
    two_hosts: DeadLetters,
) -> None:
    letters = await add(two_hosts, 25)
    newest_first = [letter.id for letter in reversed(letters)]

    pages = [await two_hosts.window(CHANNEL, offset, 10) for offset in (0, 10, 20, 30)]

    assert [[letter.id for letter in page] for page in pages] == [
        newest_first[:10],
        newest_first[10:20],
        newest_first[20:],
        [],
    ]
    assert {letter.host_index for letter in pages[0]} == {0, 1}


async def test_a_window_of_one_host_reads_only_its_page(redis_url: str) -> None:
    store = DeadLetters(RedisChannelLayer(hosts=[redis_url]))
    try:
        letters = [letter.id for letter in await add(store, 7)]
        page = await store.window(CHANNEL, 2, 3)
        assert [letter.id for letter in page] == letters[::-1][2:5]
        assert await store.window(CHANNEL, 7, 3) == []
    finally:
        await store.aclose()
