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

from worker.transport import scripts
from worker.transport.keys import ChannelKeys
from worker.transport.layer import connect

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

DEFAULT_MAX_COUNT = 10_000
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0


@dataclass(slots=True)
class DeadLetter:
    """Why a message was given up on, and what it was."""

    channel: str
    reason: str
    attempts: int
    message_type: str | None = None
    message_id: str | None = None
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    first_attempt_at: float | None = None
    last_attempt_at: float | None = None
    worker_id: str | None = None
    size_bytes: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    dead_at: float = field(default_factory=time.time)
    host_index: int = 0
    #: The decoded message when it could be decoded (filled in when read back).
    message: Any = None

    def to_json(self) -> str:
        record = asdict(self)
        record.pop("message")
        return json.dumps(record)

    @classmethod
    def from_json(cls, text: bytes | str, host_index: int) -> DeadLetter:
        record = json.loads(text)
        record["host_index"] = host_index
        return cls(**record)


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

    async def add(self, letter: DeadLetter, member: bytes) -> int:
        """Store ``letter`` for ``member`` (releasing its lease); returns how many were trimmed."""
        keys = self.keys(letter.channel)
        client = self.clients[letter.host_index]
        trimmed: Any = await client.eval(
            scripts.DEAD_LETTER,
            6,
            keys.inflight,
            keys.attempts,
            keys.first_attempt,
            keys.dead,
            keys.dead_records,
            keys.dead_members,
            member,
            letter.id,
            letter.dead_at,
            letter.to_json(),
            self.bounds.max_count,
            self.bounds.max_age_s,
        )
        return int(trimmed)

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
                moved: Any = await client.eval(
                    scripts.REQUEUE_DEAD,
                    6,
                    keys.queue,
                    keys.dead,
                    keys.dead_records,
                    keys.dead_members,
                    keys.attempts,
                    keys.first_attempt,
                    one,
                    time.time(),
                    int(self.layer.expiry),
                )
                count += int(moved)
        return count

    async def purge(self, channel: str) -> int:
        """Delete every dead letter of ``channel``; returns how many there were."""
        keys = self.keys(channel)
        count = 0
        for client in self.clients:
            count += int(await client.zcard(keys.dead))
            await client.delete(keys.dead, keys.dead_records, keys.dead_members)
        return count

    async def count(self, channel: str) -> int:
        keys = self.keys(channel)
        return sum([int(await client.zcard(keys.dead)) for client in self.clients])

    async def aclose(self) -> None:
        if self._owns_clients:
            for client in self.clients:
                await client.aclose()
