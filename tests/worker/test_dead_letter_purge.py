"""``DeadLetters.purge``: every letter of a channel gone, freed by Redis in the background."""

from __future__ import annotations

from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer
from redis.asyncio import Redis

from worker.transport.dead_letters import DeadLetter, DeadLetters
from worker.transport.keys import ChannelKeys

pytestmark = pytest.mark.redis

CHANNEL = "jobs"
LETTERS = 200


async def test_purge_unlinks_every_key_of_the_store_and_counts_the_letters(
    layer: RedisChannelLayer, redis: Redis
) -> None:
    store = DeadLetters(layer, [redis])
    for number in range(LETTERS):
        letter = DeadLetter(channel=CHANNEL, reason="failed", attempts=1, message_type="job.run")
        await store.add(letter, layer.serialize({"type": "job.run", "n": number}))
    keys = ChannelKeys.for_channel(layer.prefix, CHANNEL)
    await redis.config_resetstat()

    assert await store.purge(CHANNEL) == LETTERS

    stats: dict[str, Any] = await redis.info("commandstats")
    # UNLINK, not DEL: a store of many letters is freed without blocking Redis.
    assert "cmdstat_unlink" in stats
    assert "cmdstat_del" not in stats
    assert await redis.exists(keys.dead, keys.dead_records, keys.dead_members) == 0
    assert await store.count(CHANNEL) == 0
