"""The Lua scripts that move messages between a channel and the worker's keys atomically.

Each script is a ``.lua`` file beside this module (``transport/lua/``), read once at import.
Members are channels-redis's serialised messages, moved byte for byte, so the layer's format,
prefix and encryption are untouched. Each script touches the keys of one channel on one host;
its ``KEYS`` and ``ARGV`` are described at the top of its file.
"""

from __future__ import annotations

from importlib.resources import files

_LUA = files(__package__).joinpath("lua")
# Scripts that call requeue_at_head() get its definition in front of them.
_REQUIRES_REQUEUE_AT_HEAD = ("give_back", "requeue_expired", "promote_due")


def _load(name: str) -> str:
    source = _LUA.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    if name in _REQUIRES_REQUEUE_AT_HEAD:
        source = _LUA.joinpath("requeue_at_head.lua").read_text(encoding="utf-8") + source
    return source


#: channels-redis's send in one round trip (``send()``).
SEND = _load("send")
#: Take up to ``count`` messages, leasing them under at-least-once.
POP = _load("pop")
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
