"""The Lua scripts that move messages between a channel and the worker's keys atomically.

Each script is a ``.lua`` file beside this module (``transport/lua/``), read once at import.
Members are channels-redis's serialised messages, moved byte for byte, so the layer's format,
prefix and encryption are untouched. Each script touches the keys of one channel on one host;
its ``KEYS`` and ``ARGV`` are described at the top of its file.

Each file starts with a ``#!lua`` shebang declaring the flags Redis 7 applies before running
it: a script that adds new data (``send``, ``defer``, ``keep_progress``) has none, so Redis
refuses it under ``maxmemory`` as it refuses the layer's own ``ZADD``; a script that only moves
or removes what is stored has ``allow-oom``, so workers keep draining a full Redis. Redis 6
cannot parse a shebang: a server older than 7 is sent the same script without that line
(``server_reads_flags``).
"""

from __future__ import annotations

import hashlib
import re
import weakref
from dataclasses import dataclass, field
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoPermissionError, NoScriptError

if TYPE_CHECKING:
    import redis
    from redis.asyncio import Redis

_LUA = files(__package__).joinpath("lua")
#: Functions a script may call, each defined in a file of its name, prepended when it is used.
_HELPERS = {
    "wrong_type": "key_types",
    "keep_for": "lifetime",
    "requeue_at_head": "requeue_at_head",
    "level_key": "levels",
    "levels_of": "levels",
    "requeue_by_level": "levels",
    "store_record": "result_record",
}
#: The first Redis version that reads a script's shebang and flags.
FLAGS_SINCE = (7, 0)


def _read(name: str) -> str:
    return _LUA.joinpath(f"{name}.lua").read_text(encoding="utf-8")


def _sha1(source: str) -> str:
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class Script:
    """One worker script in the two forms a server may need."""

    name: str
    #: The shebang first, then the helpers it uses, then its body: for Redis 7 and later.
    flagged: str
    #: The same without the shebang, for Redis 6.
    legacy: str
    flagged_sha: str = field(init=False)
    legacy_sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flagged_sha", _sha1(self.flagged))
        object.__setattr__(self, "legacy_sha", _sha1(self.legacy))

    def source(self, flags: bool) -> str:
        return self.flagged if flags else self.legacy

    def sha(self, flags: bool) -> str:
        return self.flagged_sha if flags else self.legacy_sha

    def __str__(self) -> str:
        return self.flagged


def _load(name: str) -> Script:
    text = _read(name)
    shebang, _, body = text.partition("\n") if text.startswith("#!") else ("", "", text)
    if not shebang:
        raise ValueError(f"transport/lua/{name}.lua has no '#!lua' line declaring its flags")
    helpers = "".join(_read(helper) for helper in _helpers_used(body))
    return Script(name, f"{shebang}\n{helpers}{body}", helpers + body)


def _helpers_used(body: str) -> list[str]:
    """The helper files ``body`` calls, with those they call in turn, in ``_HELPERS`` order."""
    used: set[str] = set()
    text = body
    while True:
        more = {h for f, h in _HELPERS.items() if h not in used and f"{f}(" in text}
        if not more:
            return [helper for helper in dict.fromkeys(_HELPERS.values()) if helper in used]
        used |= more
        text += "".join(_read(helper) for helper in more)


# Where each pool's server has been asked once; keyed by the pool, so a client built from the
# same pool shares the answer, and a forgotten pool is forgotten here too.
_reads_flags: weakref.WeakKeyDictionary[object, bool] = weakref.WeakKeyDictionary()
_VERSION = re.compile(r"(\d+)\.(\d+)")


def reads_flags(info: dict[str, Any]) -> bool:
    """Whether a server with this ``INFO server`` reply reads shebang flags (Redis 7 and later).

    Valkey reports ``redis_version`` 7.2.4 for compatibility, so it counts as Redis 7.
    """
    match = _VERSION.match(str(info.get("redis_version", "")))
    return match is not None and (int(match[1]), int(match[2])) >= FLAGS_SINCE


async def server_reads_flags(client: Redis) -> bool:
    """Whether ``client``'s server reads script flags; asked with ``INFO server`` once per pool.

    A user whose ACL denies ``INFO`` gets the scripts without shebangs, which every version
    runs (and whose first writes are arranged so Redis 6 applies ``maxmemory`` to sends too).
    """
    pool = client.connection_pool
    known = _reads_flags.get(pool)
    if known is None:
        try:
            info: Any = await client.info("server")
        except NoPermissionError:
            info = {}
        known = _reads_flags[pool] = reads_flags(info)
    return known


def server_reads_flags_sync(client: redis.Redis) -> bool:
    """``server_reads_flags()`` for a sync client."""
    pool = client.connection_pool
    known = _reads_flags.get(pool)
    if known is None:
        try:
            info: Any = client.info("server")
        except NoPermissionError:
            info = {}
        known = _reads_flags[pool] = reads_flags(info)
    return known


async def run(client: Redis, script: Script, keys: list[Any], args: list[Any]) -> Any:
    """Run ``script`` in the form ``client``'s server reads: by SHA1, sent whole once if unknown."""
    flags = await server_reads_flags(client)
    try:
        return await client.evalsha(script.sha(flags), len(keys), *keys, *args)
    except NoScriptError:
        # EVAL also caches the script, so the next call goes by SHA1 again.
        return await client.eval(script.source(flags), len(keys), *keys, *args)


def run_sync(client: redis.Redis, script: Script, keys: list[Any], args: list[Any]) -> Any:
    """``run()`` for a sync client."""
    flags = server_reads_flags_sync(client)
    try:
        return client.evalsha(script.sha(flags), len(keys), *keys, *args)
    except NoScriptError:
        return client.eval(script.source(flags), len(keys), *keys, *args)


#: channels-redis's send in one round trip (``send()``).
SEND = _load("send")
#: A deferred send: park a message in the channel's delayed set until it is due.
DEFER = _load("defer")
#: Take up to ``count`` messages, leasing them under at-least-once.
POP = _load("pop")
#: Push the leases of messages a live worker still holds.
EXTEND = _load("extend")
#: Put taken but unstarted messages back at the head of their channel.
GIVE_BACK = _load("give_back")
#: Put back the messages of leases that ran out, counting the attempt.
REQUEUE_EXPIRED = _load("requeue_expired")
#: Move a failed message to the delayed set until its retry is due.
SCHEDULE_RETRY = _load("schedule_retry")
#: Put retries that are due back at the head of their channel.
PROMOTE_DUE = _load("promote_due")
#: Store a dead letter and trim the store to its bounds.
DEAD_LETTER = _load("dead_letter")
#: Put a dead letter back on its channel with fresh attempts.
REQUEUE_DEAD = _load("requeue_dead")
#: Keep a task's last progress report as long as its result.
KEEP_PROGRESS = _load("keep_progress")
#: Claim one tick of a schedule for one worker, under a lease.
SCHEDULE_CLAIM = _load("schedule_claim")
#: Mark a claimed tick fired and record the run, or give the claim up after a failed send.
SCHEDULE_FIRED = _load("schedule_fired")
#: Store a task's result, list it among the recent ones and keep its progress as long.
STORE_RESULT = _load("store_result")
