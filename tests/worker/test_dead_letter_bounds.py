"""Secrets and terminals: redacted start-up lines, escaped dead-letter output, bounded records."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from channels_redis.core import RedisChannelLayer
from redis.asyncio import Redis

from tests.redis_server import RedisServer
from tests.worker.process_helpers import REPO_ROOT, worker_env
from tests.worker.send_project import SETTINGS_MODULE, start_runworker
from worker.transport.dead_letters import DeadLetter, DeadLetterBounds, DeadLetters
from worker.transport.keys import ChannelKeys

pytestmark = pytest.mark.redis

CHANNEL = "thumbnails-generate"
# Clears the screen, retitles the window and hides what follows: what a hostile body may carry.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[8mhidden\u202e"


def admin(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``channel-worker --settings <the test project> ARGS``, as an operator runs it."""
    script = Path(sys.executable).parent / "channel-worker"
    return subprocess.run(
        [str(script), "--settings", SETTINGS_MODULE, *args],
        env=worker_env({"address": redis_url}),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
async def store(redis: Redis, redis_url: str) -> AsyncIterator[DeadLetters]:
    await redis.flushdb()
    layer = RedisChannelLayer(hosts=[redis_url])
    yield DeadLetters(layer, [redis])
    await layer.close_pools()


@pytest.mark.e2e
def test_a_password_in_the_url_query_is_not_in_the_startup_line() -> None:
    server = RedisServer(password="s3cret-in-query")
    server.start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0?password=s3cret-in-query"
        worker = start_runworker(url, CHANNEL)
        try:
            line = worker.wait_for_line(r"Worker \S+ consuming .*").group(0)
        finally:
            worker.close()
    finally:
        server.cleanup()
    assert "password=***" in line
    assert "s3cret" not in worker.output


async def test_dead_list_and_show_escape_control_characters(
    store: DeadLetters, redis_url: str
) -> None:
    message = {"type": f"job.{HOSTILE}", "id": HOSTILE}
    member = store.layer.serialize(message)
    letter = DeadLetter(
        channel=CHANNEL,
        reason=f"failed: {HOSTILE}",
        attempts=1,
        message_type=message["type"],
        message_id=HOSTILE,
        error=HOSTILE,
        traceback=f"Traceback:\n  line\nValueError: {HOSTILE}\n",
    )
    await store.add(letter, member)
    listing = admin(redis_url, "dead", "list", CHANNEL)
    shown = admin(redis_url, "dead", "show", CHANNEL, letter.id)
    for result in (listing, shown):
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout
        assert "\x07" not in result.stdout
        assert "\u202e" not in result.stdout
        assert "\\x1b]0;pwned\\x07" in result.stdout
    # A traceback keeps its lines.
    assert "Traceback:\n  line\nValueError: \\x1b" in shown.stdout


async def test_a_large_undecodable_message_keeps_its_size_not_its_bytes(
    store: DeadLetters, redis: Redis, redis_url: str
) -> None:
    member = b"\x00" * (10 * 1024 * 1024)
    letter = DeadLetter(
        channel=CHANNEL, reason="message is 10485760 bytes, over the limit", attempts=0
    )
    await store.add(letter, member)
    keys = ChannelKeys.for_channel(store.layer.prefix, CHANNEL)
    assert await redis.hlen(keys.dead_members) == 0
    assert int(await redis.memory_usage(keys.dead_records) or 0) < 10_000
    [listed] = await store.list(CHANNEL)
    assert listed.size_bytes == len(member)
    assert listed.message_kept is False
    assert await store.requeue(CHANNEL, letter.id) == 0
    shown = admin(redis_url, "dead", "show", CHANNEL, letter.id)
    assert "not kept: 10485760 bytes" in shown.stdout
    refused = admin(redis_url, "dead", "requeue", CHANNEL, letter.id)
    assert refused.returncode != 0
    assert "cannot be requeued" in refused.stderr


async def test_a_decoded_message_is_kept_whole_and_requeued_byte_for_byte(
    store: DeadLetters, redis: Redis
) -> None:
    # Over the store's bound for undecoded messages, but the worker decoded it: it is the real
    # message a handler failed on, so requeue must re-send all of it.
    store.bounds = DeadLetterBounds(max_undecoded_bytes=1000)
    member = store.layer.serialize({"type": "job.run", "pad": "x" * 5000})
    letter = DeadLetter(channel=CHANNEL, reason="failed", attempts=5, message_type="job.run")
    await store.add(letter, member)
    assert await store.requeue(CHANNEL, letter.id) == 1
    keys = ChannelKeys.for_channel(store.layer.prefix, CHANNEL)
    assert await redis.zrange(keys.queue, 0, -1) == [member]


async def test_a_dead_letter_record_is_bounded_whatever_the_error(store: DeadLetters) -> None:
    letter = DeadLetter(
        channel=CHANNEL,
        reason="r" * 100_000,
        attempts=1,
        message_type="t" * 10_000,
        error="e" * 1_000_000,
        traceback="frame\n" * 100_000 + "ValueError: the end",
        dead_at=time.time(),
    )
    await store.add(letter, store.layer.serialize({"type": "job.run"}))
    [listed] = await store.list(CHANNEL)
    assert len(listed.to_json()) < 30_000
    assert listed.traceback is not None
    assert listed.traceback.endswith("ValueError: the end")
    assert listed.error is not None
    assert "characters cut" in listed.error
