"""pytest fixture ``channel_worker``: ``pytest_plugins = ["worker.pytest_plugin"]`` in conftest.py.

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

from worker._sender import close_connections
from worker.testing import drain, drain_sync


class ChannelWorker:
    """``drain`` (async) and ``drain_sync``, from ``worker.testing``."""

    drain = staticmethod(drain)
    drain_sync = staticmethod(drain_sync)


@pytest.fixture
def channel_worker() -> Iterator[ChannelWorker]:
    """Drains channels through the real worker; closes send() connections after the test."""
    yield ChannelWorker()
    close_connections()
