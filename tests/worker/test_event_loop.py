"""``--loop``: which event loop a worker process runs on, and the errors when it cannot."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from worker.consume.event_loop import loop_factory, running_loop_name
from worker.errors import ConfigurationError


def loop_made_by(name: str) -> asyncio.AbstractEventLoop:
    loop = loop_factory(name)()
    loop.close()
    return loop


@pytest.fixture
def without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry makes `import uvloop` raise ImportError, as on a machine without it.
    monkeypatch.setitem(sys.modules, "uvloop", None)


def test_auto_and_uvloop_run_on_uvloop_when_it_is_installed() -> None:
    assert isinstance(loop_made_by("auto"), uvloop.Loop)
    assert isinstance(loop_made_by("uvloop"), uvloop.Loop)


def test_asyncio_runs_on_asyncios_own_loop_even_when_uvloop_is_installed() -> None:
    loop = loop_made_by("asyncio")
    assert not isinstance(loop, uvloop.Loop)
    assert isinstance(loop, asyncio.BaseEventLoop)


@pytest.mark.usefixtures("without_uvloop")
def test_auto_falls_back_to_asyncio_without_uvloop() -> None:
    assert not isinstance(loop_made_by("auto"), uvloop.Loop)


@pytest.mark.usefixtures("without_uvloop")
def test_uvloop_without_the_package_names_the_install_and_the_alternative() -> None:
    with pytest.raises(ConfigurationError) as raised:
        loop_factory("uvloop")
    message = str(raised.value)
    assert "--loop uvloop needs the uvloop package" in message
    assert "pip install 'channel-worker[fast]'" in message
    assert "--loop asyncio" in message


def test_an_unknown_loop_is_named_with_the_accepted_ones() -> None:
    with pytest.raises(
        ConfigurationError, match=r"--loop 'trio' is not one of: auto, asyncio, uvloop"
    ):
        loop_factory("trio")


@pytest.mark.parametrize(("name", "expected"), [("asyncio", "asyncio"), ("uvloop", "uvloop")])
def test_the_running_loop_is_named_for_the_start_up_line(name: str, expected: str) -> None:
    async def name_of_running_loop() -> str:
        return running_loop_name()

    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        assert runner.run(name_of_running_loop()) == expected
