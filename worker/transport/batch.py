"""Script calls to one host sent together: one round trip in flight per host, the rest waiting.

The task consumer stores each task's result with a script; ten tasks that end together would make
ten round trips, each paying redis-py's per-command work on the worker's loop. ``ScriptBatch``
sends a host's calls at the end of the turn of the loop that made them, unless a round trip to
that host is still under way: then they wait for its reply and go together, as one pipeline, in
the next one. A lone call goes as a plain call, at once. So calls made in one turn share a round
trip, and so do calls made while a round trip is under way (the outcomes of sync tasks, whose
threads end one at a time), without delaying any call while the host is idle.

Each caller gets its own script's reply or error; a lost connection fails every call of its
pipeline, as it would have failed each of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from worker.transport.scripts import Script, run, server_reads_flags

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class _Call:
    script: Script
    keys: list[Any]
    args: list[Any]
    reply: asyncio.Future[Any]


class ScriptBatch:
    """Batches script calls to ``clients`` (one per layer host) on the loop they belong to."""

    def __init__(self, clients: Sequence[Redis]) -> None:
        self.clients = clients
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queued: dict[int, list[_Call]] = {}
        #: The round trip under way to each host that has one. Strong references too: the loop
        #: keeps only weak ones to the tasks it runs.
        self._sending: dict[int, asyncio.Task[None]] = {}

    async def run(self, index: int, script: Script, keys: list[Any], args: list[Any]) -> Any:
        """Run ``script`` on host ``index`` with the other calls made this turn of the loop, or
        while the round trip before them is under way.

        A caller that stops waiting before its call is sent takes it out of the batch.
        """
        loop = self._own_loop()
        call = _Call(script, keys, args, loop.create_future())
        queued = self._queued.setdefault(index, [])
        queued.append(call)
        if len(queued) == 1 and index not in self._sending:
            loop.call_soon(self._send, index)
        return await call.reply

    async def aclose(self) -> None:
        """Wait for the round trips under way and the calls waiting for them (before the
        clients close)."""
        while self._sending or any(self._queued.values()):
            if not self._sending:
                await asyncio.sleep(0)  # the _send() scheduled this turn starts them
                continue
            await asyncio.gather(*self._sending.values(), return_exceptions=True)

    def _own_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(
                "A ScriptBatch runs only on the event loop it was first used on, where its "
                "clients' connections live."
            )
        return loop

    def _send(self, index: int) -> None:
        """Start a round trip to host ``index`` with the calls waiting for it, if any still wait."""
        calls = [call for call in self._queued.pop(index, []) if not call.reply.done()]
        if not calls:
            return
        task = asyncio.get_running_loop().create_task(self._round_trip(index, calls))
        self._sending[index] = task
        task.add_done_callback(lambda done: self._sent(index, done, calls))

    def _sent(self, index: int, task: asyncio.Task[None], calls: list[_Call]) -> None:
        """A round trip to host ``index`` ended: the calls that waited for it go now."""
        del self._sending[index]
        if task.cancelled():
            # Cancelled before its first step, it told none of its callers (one cancelled
            # later told them already).
            for call in calls:
                _settle(call, asyncio.CancelledError())
        if self._queued.get(index):
            self._send(index)

    async def _round_trip(self, index: int, calls: list[_Call]) -> None:
        try:
            client = self.clients[index]
            if len(calls) == 1:
                call = calls[0]
                replies = [await run(client, call.script, call.keys, call.args)]
            else:
                replies = await _pipelined(client, calls)
        except BaseException as error:
            for call in calls:
                _settle(call, error)
            if not isinstance(error, Exception):
                raise
            return
        for call, reply in zip(calls, replies, strict=True):
            _settle(call, reply)


async def _pipelined(client: Redis, calls: list[_Call]) -> list[Any]:
    """Each call's reply, or the error it met; a script the server lost is sent whole again."""
    flags = await server_reads_flags(client)
    async with client.pipeline(transaction=False) as pipe:
        for call in calls:
            pipe.evalsha(call.script.sha(flags), len(call.keys), *call.keys, *call.args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    for position, (call, reply) in enumerate(zip(calls, replies, strict=True)):
        if isinstance(reply, NoScriptError):
            try:
                replies[position] = await run(client, call.script, call.keys, call.args)
            except Exception as error:
                replies[position] = error
    return replies


def _settle(call: _Call, reply: Any) -> None:
    """Give ``call`` its reply, or raise its error in the caller; not if it stopped waiting."""
    if call.reply.done():
        return
    if isinstance(reply, asyncio.CancelledError):
        # The round trip was cancelled (the worker is stopping), not the caller's own wait.
        call.reply.cancel()
    elif isinstance(reply, BaseException):
        call.reply.set_exception(reply)
    else:
        call.reply.set_result(reply)
