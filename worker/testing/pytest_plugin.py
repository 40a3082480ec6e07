"""The pytest fixture ``channel_worker``.

In conftest.py: ``pytest_plugins = ["worker.testing.pytest_plugin"]``.

::

    def test_add_task(channel_worker):
        result = add.enqueue(2, 3)
        channel_worker.drain_sync(["tasks.default"])
        result.refresh()
        assert result.return_value == 5
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from worker.sending.pools import close_connections
from worker.testing.drain import drain, drain_sync


class ChannelWorker:
    """``drain`` (async) and ``drain_sync``, from ``worker.testing.drain``."""

    drain = staticmethod(drain)
    drain_sync = staticmethod(drain_sync)


@pytest.fixture
def channel_worker() -> Iterator[ChannelWorker]:
    """Drains channels through the real worker; closes send() connections after the test."""
    yield ChannelWorker()
    close_connections()
