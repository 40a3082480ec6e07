"""Dead letters: messages no handler could complete, kept in Redis with the reason.

Each channel has its own bounded store on every layer host (a message's dead letter stays on the
host it came from, so moving it there is one atomic step). The same API serves the worker and
``channel-worker dead list|show|requeue|purge CHANNEL``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from worker.constants import DEFAULT_MAX_MESSAGE_BYTES
from worker.transport import scripts
from worker.transport.keys import ChannelKeys
from worker.transport.layer import connect

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

DEFAULT_MAX_COUNT = 10_000
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
#: Undecoded messages larger than this keep only their size (``DeadLetterBounds``).
DEFAULT_MAX_UNDECODED_BYTES = DEFAULT_MAX_MESSAGE_BYTES
# Text fields of a record longer than these are cut; a traceback keeps its end, where the
# exception is, and the rest keep their start.
_MAX_CHARS = {"reason": 2_000, "error": 4_000, "traceback": 16_000}
_MAX_NAME_CHARS = 200


@dataclass(slots=True)
class DeadLetter:
    """Why a message was given up on, and what it was."""

    channel: str
    reason: str
    attempts: int
    #: The message's type, or for a task message its task's import path; None if undecoded.
    message_type: str | None = None
    message_id: str | None = None
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    first_attempt_at: float | None = None
    last_attempt_at: float | None = None
    worker_id: str | None = None
    #: The message's size, serialised, whether or not it was kept.
    size_bytes: int = 0
    #: False when the message was too large to keep (``DeadLetterBounds``): it cannot be requeued.
    message_kept: bool = True
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    dead_at: float = field(default_factory=time.time)
    host_index: int = 0
    #: The decoded message when it could be decoded (filled in when read back).
    message: Any = None

    def to_json(self) -> str:
        """The stored record: every text field cut to a bounded length, saying so."""
        record = asdict(self)
        record.pop("message")
        for name, limit in _MAX_CHARS.items():
            record[name] = _cut(record[name], limit, keep_end=name == "traceback")
        for name in ("message_type", "message_id", "error_type", "worker_id"):
            record[name] = _cut(record[name], _MAX_NAME_CHARS)
        return json.dumps(record)

    @classmethod
    def from_json(cls, text: bytes | str, host_index: int) -> DeadLetter:
        record = json.loads(text)
        record["host_index"] = host_index
        return cls(**record)


def _cut(text: str | None, limit: int, *, keep_end: bool = False) -> str | None:
    if text is None or len(text) <= limit:
        return text
    note = f"[{len(text) - limit} of {len(text)} characters cut]"
    return f"{note}\n{text[-limit:]}" if keep_end else f"{text[:limit]}{note}"


def message_id(message: object) -> str | None:
    """The message's own id field, if it has one, for listings."""
    if isinstance(message, dict):
        for key in ("id", "task_id", "message_id", "pk"):
            if key in message:
                return str(message[key])
    return None


@dataclass(frozen=True, slots=True)
class DeadLetterBounds:
    """How many dead letters a channel keeps, and for how long."""

    max_count: int = DEFAULT_MAX_COUNT
    max_age_s: float = DEFAULT_MAX_AGE_S
    #: A message the worker could not decode (over its ``max_message_bytes``, not the layer's
    #: format) and larger than this is not kept: its letter keeps its size and reason only. A
    #: decoded message is always kept whole, so ``requeue`` re-sends it byte for byte.
    max_undecoded_bytes: int = DEFAULT_MAX_UNDECODED_BYTES


class DeadLetters:
    """Read and manage dead letters of a channels-redis layer.

    ::

        dead = DeadLetters(layer)
        for letter in await dead.list("thumbnails-generate"):
            print(letter.id, letter.message_type, letter.reason)
        await dead.requeue("thumbnails-generate", letter.id)
    """

    def __init__(
        self,
        layer: RedisChannelLayer,
        clients: Sequence[Redis] | None = None,
        bounds: DeadLetterBounds | None = None,
    ) -> None:
        self.layer = layer
        self._owns_clients = clients is None
        self.clients = list(clients) if clients is not None else connect(layer, 0.0)
        self.bounds = bounds or DeadLetterBounds()

    def keys(self, channel: str) -> ChannelKeys:
        return ChannelKeys.for_channel(self.layer.prefix, channel)

    async def add(self, letter: DeadLetter, member: bytes, level: int = 0) -> int:
        """Store ``letter`` for ``member`` (releasing its lease); returns how many were trimmed.

        ``level``: the priority it was queued at, where ``requeue()`` puts it back.
        """
        keys = self.keys(letter.channel)
        client = self.clients[letter.host_index]
        letter.size_bytes = len(member)
        letter.message_kept = not self._too_large(letter, member)
        trimmed: Any = await scripts.run(
            client,
            scripts.DEAD_LETTER,
            [
                keys.inflight,
                keys.attempts,
                keys.first_attempt,
                keys.dead,
                keys.dead_records,
                keys.dead_members,
                keys.member_levels,
                keys.dead_levels,
            ],
            [
                member,
                int(letter.message_kept),
                letter.id,
                letter.dead_at,
                letter.to_json(),
                self.bounds.max_count,
                self.bounds.max_age_s,
                level,
            ],
        )
        return int(trimmed)

    def _too_large(self, letter: DeadLetter, member: bytes) -> bool:
        return letter.message_type is None and len(member) > self.bounds.max_undecoded_bytes

    async def list(self, channel: str, limit: int | None = None) -> list[DeadLetter]:
        """Dead letters of ``channel`` on every host, oldest first."""
        keys = self.keys(channel)
        letters: list[DeadLetter] = []
        for index, client in enumerate(self.clients):
            ids: Any = await client.zrange(keys.dead, 0, -1)
            if not ids:
                continue
            records: Any = await client.hmget(keys.dead_records, ids)
            letters += [
                DeadLetter.from_json(record, index) for record in records if record is not None
            ]
        letters.sort(key=lambda letter: letter.dead_at)
        return letters[:limit] if limit is not None else letters

    async def window(self, channel: str, offset: int, limit: int) -> Sequence[DeadLetter]:
        """Up to ``limit`` dead letters of ``channel``, newest first, from the ``offset``-th on.

        Reads only the ids up to ``offset + limit`` and the records of the window, so a page of
        a large store stays cheap.
        """
        keys = self.keys(channel)
        # One host: the window itself; several: each host's first offset + limit, merged.
        start = offset if len(self.clients) == 1 else 0
        windows: Any = [
            await client.zrevrange(keys.dead, start, offset + limit - 1, withscores=True)
            for client in self.clients
        ]
        newest = sorted(
            ((float(score), index, one) for index, ids in enumerate(windows) for one, score in ids),
            key=lambda entry: entry[0],
            reverse=True,
        )[offset - start : offset - start + limit]
        letters: Any = []
        for index, client in enumerate(self.clients):
            chosen = [one for _, host, one in newest if host == index]
            if chosen:
                records: Any = await client.hmget(keys.dead_records, chosen)
                letters += [DeadLetter.from_json(r, index) for r in records if r is not None]
        return sorted(letters, key=lambda letter: letter.dead_at, reverse=True)

    async def show(self, channel: str, letter_id: str) -> DeadLetter | None:
        """One dead letter with its decoded message (or raw bytes when undecodable)."""
        keys = self.keys(channel)
        for index, client in enumerate(self.clients):
            record: Any = await client.hget(keys.dead_records, letter_id)
            if record is None:
                continue
            letter = DeadLetter.from_json(record, index)
            member: Any = await client.hget(keys.dead_members, letter_id)
            try:
                letter.message = self.layer.deserialize(member)
            except Exception:
                letter.message = member
            return letter
        return None

    async def requeue(self, channel: str, letter_id: str | None = None) -> int:
        """Put one dead letter (or all of them) back on the channel with fresh attempts."""
        keys = self.keys(channel)
        count = 0
        for client in self.clients:
            ids: Any = [letter_id] if letter_id else await client.zrange(keys.dead, 0, -1)
            for one in ids:
                moved: Any = await scripts.run(
                    client,
                    scripts.REQUEUE_DEAD,
                    [
                        keys.queue,
                        keys.dead,
                        keys.dead_records,
                        keys.dead_members,
                        keys.attempts,
                        keys.first_attempt,
                        keys.levels,
                        keys.member_levels,
                        keys.dead_levels,
                    ],
                    [one, time.time(), int(self.layer.expiry), keys.level_prefix],
                )
                count += int(moved)
        return count

    async def purge(self, channel: str) -> int:
        """Delete every dead letter of ``channel``; returns how many there were."""
        keys = self.keys(channel)
        count = 0
        for client in self.clients:
            count += int(await client.zcard(keys.dead))
            # UNLINK: a store of many letters is freed in the background, not while Redis waits.
            await client.unlink(keys.dead, keys.dead_records, keys.dead_members, keys.dead_levels)
        return count

    async def count(self, channel: str) -> int:
        keys = self.keys(channel)
        return sum([int(await client.zcard(keys.dead)) for client in self.clients])

    async def aclose(self) -> None:
        if self._owns_clients:
            for client in self.clients:
                await client.aclose()
