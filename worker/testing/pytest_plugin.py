"""The pytest fixture ``channel_worker``.

In conftest.py: ``pytest_plugins = ["worker.testing.pytest_plugin"]``.

::

    def test_add_task(channel_worker):
        result = add.enqueue(2, 3)
        channel_worker.drain_sync(["tasks.default"])
        result.refresh()
        assert result.return_value == 5

During the test, every channels-redis layer in ``CHANNEL_LAYERS`` gets a key prefix of the test
session's own (``asgi`` becomes ``asgi-test-<token>-``), so a development ``runworker`` on the
same Redis never takes the test's messages, and the test never takes the development worker's.
``send()``, ``get_channel_layer()``, tasks and ``drain()`` all use the prefixed layers. The
session's keys are deleted when the session ends.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from worker.sending.pools import close_connections, sync_pool
from worker.testing.drain import drain, drain_sync

#: channels-redis's key prefix when a layer's CONFIG names none.
_DEFAULT_PREFIX = "asgi"
_CLEANUP_SCAN_COUNT = 500
# The session's keys are deleted best-effort: a Redis already gone must not hang the exit.
_CLEANUP_TIMEOUT_S = 2.0


class ChannelWorker:
    """``drain`` (async) and ``drain_sync``, from ``worker.testing.drain``.

    ``prefixes`` maps each channels-redis layer alias to the key prefix the test runs with.
    """

    drain = staticmethod(drain)
    drain_sync = staticmethod(drain_sync)

    def __init__(self, prefixes: Mapping[str, str]) -> None:
        self.prefixes = dict(prefixes)


@dataclass
class _SessionKeys:
    """The session's own prefix tag, and where keys under it may have been written."""

    tag: str = field(default_factory=lambda: f"-test-{secrets.token_hex(4)}-")
    #: (prefix, host) pairs, each host as channels-redis normalised it.
    written: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def remember(self, prefix: str, hosts: list[dict[str, Any]]) -> None:
        for host in hosts:
            if (prefix, host) not in self.written:
                self.written.append((prefix, dict(host)))

    def delete(self) -> None:
        for prefix, host in self.written:
            with contextlib.suppress(redis.RedisError, OSError):
                _delete_prefixed(prefix, host)


_session_keys = pytest.StashKey[_SessionKeys]()


def _delete_prefixed(prefix: str, host: dict[str, Any]) -> None:
    options = host | {
        "socket_timeout": _CLEANUP_TIMEOUT_S,
        "socket_connect_timeout": _CLEANUP_TIMEOUT_S,
    }
    pool = sync_pool(options)
    client = redis.Redis(connection_pool=pool)
    try:
        batch: list[Any] = []
        for key in client.scan_iter(match=f"{prefix}*", count=_CLEANUP_SCAN_COUNT):
            batch.append(key)
            if len(batch) >= _CLEANUP_SCAN_COUNT:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)
    finally:
        client.close()
        pool.disconnect()


def isolated_layers(layers: Mapping[str, Any], tag: str) -> dict[str, Any]:
    """``CHANNEL_LAYERS`` with ``tag`` added to the prefix of every channels-redis layer."""
    isolated: dict[str, Any] = {}
    for alias, entry in layers.items():
        if not _is_redis_layer(entry):
            isolated[alias] = entry
            continue
        config = dict(entry.get("CONFIG") or {})
        config["prefix"] = f"{config.get('prefix', _DEFAULT_PREFIX)}{tag}"
        isolated[alias] = {**entry, "CONFIG": config}
    return isolated


def _is_redis_layer(entry: object) -> bool:
    from channels_redis.core import RedisChannelLayer
    from django.utils.module_loading import import_string

    if not isinstance(entry, Mapping) or not isinstance(entry.get("BACKEND"), str):
        return False
    try:
        backend = import_string(entry["BACKEND"])
    except ImportError:
        return False  # Channels reports it when the layer is first used.
    return isinstance(backend, type) and issubclass(backend, RedisChannelLayer)


def _session(config: pytest.Config) -> _SessionKeys:
    keys = config.stash.get(_session_keys, None)
    if keys is None:
        keys = config.stash[_session_keys] = _SessionKeys()
        config.add_cleanup(keys.delete)
    return keys


@pytest.fixture
def channel_worker(request: pytest.FixtureRequest) -> Iterator[ChannelWorker]:
    """Drains channels through the real worker, on channel layers of the test session's own.

    Every channels-redis layer's prefix gets the session's tag for the test, so a development
    worker on the same Redis cannot take the test's messages; ``send()`` connections are closed
    after the test and the session's keys deleted when it ends.
    """
    from channels.layers import get_channel_layer
    from django.conf import settings
    from django.test import override_settings

    session = _session(request.config)
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    with override_settings(CHANNEL_LAYERS=isolated_layers(layers, session.tag)):
        prefixes = {}
        for alias, entry in settings.CHANNEL_LAYERS.items():
            if _is_redis_layer(entry):
                layer = get_channel_layer(alias)
                prefixes[alias] = layer.prefix
                session.remember(layer.prefix, list(layer.hosts))
        try:
            yield ChannelWorker(prefixes)
        finally:
            close_connections()
