"""The event loop a worker process runs on: uvloop when it is installed, else asyncio's own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from worker.errors import ConfigurationError

LOOPS = ("auto", "asyncio", "uvloop")
DEFAULT_LOOP = "auto"

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(name: str) -> LoopFactory:
    """The factory for ``--loop name``; ``auto`` picks uvloop when it can be imported."""
    if name not in LOOPS:
        raise ConfigurationError(f"--loop {name!r} is not one of: {', '.join(LOOPS)}.")
    if name == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise ConfigurationError(
                "--loop uvloop needs the uvloop package, which is not installed (it has no "
                "Windows build): pip install 'channel-worker[fast]', or use --loop asyncio."
            ) from None
        return asyncio.new_event_loop
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``, whichever made ``loop``."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``, whichever runs the current event loop."""
    return loop_name(asyncio.get_running_loop())
