"""The layer: which layers the worker serves, read timeouts on its hosts, redaction."""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from redis.asyncio import Redis

from tests.worker._inprocess import wait_until
from worker.constants import READ_TIMEOUT_MARGIN_S
from worker.errors import ConfigurationError, UnsupportedLayer
from worker.transport.layer import (
    check_layer,
    connect,
    describe_hosts,
    harden_layer,
    redact,
    with_read_timeout,
)

# What a consumer's blocking receive inside the worker needs: channels-redis blocks 5 s per
# receive, which is also redis-py 8's default socket timeout.
LAYER_READ_TIMEOUT_S = RedisChannelLayer.brpop_timeout + READ_TIMEOUT_MARGIN_S
REDIS_PY_DEFAULT_TIMEOUT_S = 5


def effective_timeouts(layer: RedisChannelLayer) -> list[float]:
    """The socket timeout each host's connection pool really gets (a URL query wins)."""
    return [
        layer.create_pool(index).connection_kwargs["socket_timeout"]
        for index in range(len(layer.hosts))
    ]


def test_layer_read_timeout_outlasts_the_blocking_receive() -> None:
    assert max(RedisChannelLayer.brpop_timeout, REDIS_PY_DEFAULT_TIMEOUT_S) < LAYER_READ_TIMEOUT_S


def test_harden_layer_sets_a_read_timeout_on_url_hosts_without_one() -> None:
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:6390/0"])
    harden_layer(layer)
    assert layer.hosts == [
        {"address": "redis://127.0.0.1:6390/0", "socket_timeout": LAYER_READ_TIMEOUT_S}
    ]
    assert effective_timeouts(layer) == [LAYER_READ_TIMEOUT_S]


def test_harden_layer_raises_a_short_socket_timeout_on_dict_hosts() -> None:
    layer = RedisChannelLayer(
        hosts=[
            {"address": "redis://127.0.0.1:6390/0", "socket_timeout": 1},
            {"host": "127.0.0.1", "port": 6391, "socket_timeout": 2.5},
            {"host": "127.0.0.1", "port": 6392},
        ]
    )
    harden_layer(layer)
    assert [host["socket_timeout"] for host in layer.hosts] == [LAYER_READ_TIMEOUT_S] * 3
    assert layer.hosts[1]["host"] == "127.0.0.1"
    assert layer.hosts[1]["port"] == 6391
    assert effective_timeouts(layer) == [LAYER_READ_TIMEOUT_S] * 3


def test_harden_layer_keeps_a_longer_socket_timeout() -> None:
    layer = RedisChannelLayer(hosts=[{"address": "redis://127.0.0.1:6390/0", "socket_timeout": 60}])
    harden_layer(layer)
    assert layer.hosts[0]["socket_timeout"] == 60
    assert effective_timeouts(layer) == [60]


def test_harden_layer_raises_a_socket_timeout_in_the_url_query() -> None:
    # redis-py lets the URL's socket_timeout override keyword arguments, so the URL itself
    # has to change.
    layer = RedisChannelLayer(
        hosts=["redis://127.0.0.1:6390/0?socket_timeout=2&health_check_interval=9"]
    )
    harden_layer(layer)
    address = layer.hosts[0]["address"]
    assert "socket_timeout=2&" not in address
    assert f"socket_timeout={LAYER_READ_TIMEOUT_S}" in address
    assert "health_check_interval=9" in address
    assert effective_timeouts(layer) == [LAYER_READ_TIMEOUT_S]


def test_harden_layer_keeps_a_longer_socket_timeout_in_the_url_query() -> None:
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:6390/0?socket_timeout=90"])
    harden_layer(layer)
    assert effective_timeouts(layer) == [90]


def test_with_read_timeout_leaves_the_given_host_untouched() -> None:
    host: dict[str, Any] = {"address": "redis://h:1/0?socket_timeout=1", "socket_timeout": 1}
    patched = with_read_timeout(host, 30)
    assert host == {"address": "redis://h:1/0?socket_timeout=1", "socket_timeout": 1}
    assert patched == {"address": "redis://h:1/0?socket_timeout=30", "socket_timeout": 30}


async def test_worker_connections_read_longer_than_their_blocking_pop() -> None:
    layer = RedisChannelLayer(
        hosts=["redis://127.0.0.1:6390/0?socket_timeout=2", {"host": "127.0.0.1", "port": 6391}]
    )
    clients = connect(layer, 1.0)
    try:
        timeouts = [
            client.connection_pool.connection_kwargs["socket_timeout"] for client in clients
        ]
        assert timeouts == [1.0 + READ_TIMEOUT_MARGIN_S] * 2
        # The layer's own host list is not changed by connecting.
        assert layer.hosts[1] == {"host": "127.0.0.1", "port": 6391}
    finally:
        for client in clients:
            await client.aclose(close_connection_pool=True)


@pytest.mark.redis
async def test_closing_a_worker_connection_closes_its_socket(redis_url: str) -> None:
    [client] = connect(RedisChannelLayer(hosts=[redis_url]), 1.0)
    observer = Redis.from_url(redis_url)

    async def names() -> list[str]:
        clients: list[dict[str, Any]] = await observer.client_list()
        return [entry["name"] for entry in clients]

    try:
        await client.client_setname("closing-test")
        assert "closing-test" in await names()
        await client.aclose()

        async def closed() -> bool:
            return "closing-test" not in await names()

        await wait_until(closed, what="the server saw the connection close")
    finally:
        await observer.aclose()


# Supported layers


def test_check_layer_returns_a_redis_channel_layer() -> None:
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:6390/0"])
    assert check_layer(layer, "default") is layer


def test_check_layer_explains_a_missing_alias() -> None:
    with pytest.raises(
        UnsupportedLayer,
        match=r"No channel layer 'tasks': CHANNEL_LAYERS has no such alias\. runworker needs "
        r"channels_redis\.core\.RedisChannelLayer",
    ):
        check_layer(None, "tasks")


def test_check_layer_rejects_the_in_memory_layer() -> None:
    with pytest.raises(
        UnsupportedLayer,
        match=r"Channel layer 'default' is channels\.layers\.InMemoryChannelLayer, which "
        r"runworker cannot serve: it lives inside one process",
    ):
        check_layer(InMemoryChannelLayer(), "default")


def test_check_layer_rejects_the_pubsub_layer() -> None:
    layer = RedisPubSubChannelLayer(hosts=["redis://127.0.0.1:6390/0"])
    with pytest.raises(
        UnsupportedLayer,
        match=r"channels_redis\.pubsub\.RedisPubSubChannelLayer, which runworker cannot serve: "
        r"it delivers every message to every subscriber",
    ):
        check_layer(layer, "default")


def test_check_layer_rejects_any_other_object_and_names_the_fix() -> None:
    with pytest.raises(
        UnsupportedLayer,
        match=r"is builtins\.object, which runworker cannot serve: .* Use "
        r"channels_redis\.core\.RedisChannelLayer\.",
    ):
        check_layer(object(), "default")


def test_unsupported_layer_is_a_configuration_error_and_a_value_error() -> None:
    with pytest.raises(ConfigurationError):
        check_layer(object(), "default")
    with pytest.raises(ValueError, match="RedisChannelLayer"):
        check_layer(None, "default")


# Redaction


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://***@cache:6379/0"),
        ("rediss://user:s3cret@cache:6380", "rediss://***@cache:6380"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        (("cache", 6379), "[cache, 6379]"),
    ],
)
def test_redact_hides_url_credentials(value: object, shown: str) -> None:
    assert redact(value) == shown


def test_redact_hides_password_keys_and_urls_in_dict_hosts() -> None:
    shown = redact(
        {
            "address": "redis://:url-secret@cache:6379",
            "password": "dict-secret",
            "sentinel_kwargs": {"password": "sentinel-secret"},
            "db": 2,
        }
    )
    assert "secret" not in shown
    assert "'password': '***'" in shown
    assert "redis://***@cache:6379" in shown
    assert "'db'" in shown


def test_describe_hosts_redacts_every_host() -> None:
    layer = RedisChannelLayer(
        hosts=[
            "redis://:one@cache-a:6379/0",
            {"address": "redis://user:two@cache-b:6379/0", "password": "three"},
            {"host": "cache-c", "port": 6379, "password": "four"},
        ]
    )
    described = describe_hosts(layer)
    for secret in ("one", "two", "three", "four"):
        assert secret not in described
    assert "redis://***@cache-a:6379/0" in described
    assert "redis://***@cache-b:6379/0" in described
    assert "cache-c" in described
