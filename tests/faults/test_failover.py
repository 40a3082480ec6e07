"""Layer hosts that go away under load: a Sentinel failover, and one of two hosts restarted.

Real redis-server processes (a master, its replica and ``redis-server --sentinel``; two layer
hosts with ``appendfsync always``) and real ``runworker`` processes. The consumers record what
they handle on the suite's own redis-server, which no fault touches. ``pytest tests/faults -s``
prints the figures of the delivery page's fault table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from redis.sentinel import MasterNotFoundError, Sentinel

from tests.faults.test_redis_faults import handler_runs
from tests.redis_server import RedisServer
from tests.worker.process_helpers import wait_until
from tests.worker.test_faults import KEYS, Fleet, records, report, send, size, stop
from worker.sending.pools import sync_pool

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

Server = TypeVar("Server", bound=RedisServer)


MASTER_NAME = "mymaster"
# The master counts as down this long after it stops answering: longer than the lease, so the
# leases the worker held run out on the new master before it gets there.
DOWN_AFTER_MS = 2500
CONCURRENCY = 10
LEASE_S = "2"
OPTIONS = ("--lease-s", LEASE_S, "--concurrency", str(CONCURRENCY), "--health-interval-s", "0.5")
# Handler runs beyond one per message: what the killed or cut-off worker had running or
# prefetched (the prefetch defaults to the concurrency), taken again elsewhere.
REDELIVERY_BOUND = 2 * CONCURRENCY


class SentinelServer(RedisServer):
    """``redis-server --sentinel`` watching ``master``, failing over a second after
    ``DOWN_AFTER_MS``."""

    def __init__(self, master: RedisServer, directory: Path) -> None:
        super().__init__()
        # Sentinel rewrites its configuration file as it learns, so it gets one of its own.
        self.config = directory / f"sentinel-{self.port}.conf"
        self.config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.directory}\n"
            "loglevel warning\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} 2000\n"
        )

    def command(self) -> list[str]:
        return [self.binary, str(self.config), "--sentinel"]

    def master_port(self) -> int | None:
        """The master's port as clients find it, None while Sentinel knows no healthy master.

        (``SENTINEL GET-MASTER-ADDR-BY-NAME`` names the promoted replica a moment earlier,
        while the failover is still under way and clients are still refused.)
        """
        sentinel = Sentinel([("127.0.0.1", self.port)])  # type: ignore[no-untyped-call]
        try:
            _, port = sentinel.discover_master(MASTER_NAME)  # type: ignore[no-untyped-call]
        except MasterNotFoundError:
            return None
        finally:
            for client in sentinel.sentinels:
                client.close()
        return int(port)

    def knows_replica(self, replica: RedisServer) -> bool:
        """Whether Sentinel has found ``replica`` and sees its link to the master up."""
        with self.client() as client:
            found: list[dict[str, Any]] = client.sentinel_slaves(MASTER_NAME)
        return any(
            int(entry["port"]) == replica.port
            and not entry["is_sdown"]
            and entry.get("master-link-status") == "ok"
            for entry in found
        )


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    """The redis-servers a test starts, killed and removed at teardown."""
    started: list[RedisServer] = []
    yield started
    for server in started:
        server.cleanup()


def start(servers: list[RedisServer], server: Server) -> Server:
    servers.append(server)
    server.start()
    return server


def replicating(replica: RedisServer) -> bool:
    with replica.client() as client:
        info: dict[str, Any] = client.info("replication")
    return info.get("master_link_status") == "up"


def messages(prefix: str, count: int, sleep_s: float) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{number}", "sleep_s": sleep_s} for number in range(count)]


def settled(client: redis.Redis) -> bool:
    """Nothing left on the host: no message queued, leased or waiting for a retry."""
    return (
        size(client, KEYS.queue) == size(client, KEYS.inflight) == size(client, KEYS.delayed) == 0
    )


# Sentinel failover

FAILOVER_BEFORE = 600
FAILOVER_AFTER = 200
PROBE_KEY = "cw-faults:probe"


@pytest.mark.timeout(90)
def test_sentinel_failover_under_load_loses_and_dead_letters_nothing_the_master_had_replicated(
    fleet: Fleet,
    redis_server: RedisServer,
    records_client: redis.Redis,
    servers: list[RedisServer],
    tmp_path: Path,
) -> None:
    master = start(servers, RedisServer())
    replica = start(servers, RedisServer("--replicaof", "127.0.0.1", str(master.port)))
    sentinel = start(servers, SentinelServer(master, tmp_path))
    sentinel_host = {"sentinels": [["127.0.0.1", sentinel.port]], "master_name": MASTER_NAME}
    fleet.extra_env["LAYER_HOSTS"] = json.dumps([sentinel_host])
    worker = fleet.start(redis_server.url, *OPTIONS)
    wait_until(
        lambda: replicating(replica) and sentinel.knows_replica(replica),
        "the replica in sync and known to Sentinel",
        log=worker,
    )
    before = messages("before", FAILOVER_BEFORE, sleep_s=0.02)
    with master.client() as client:
        send(client, before)
        # Replication is asynchronous: what the replica has not received when the master dies,
        # Redis loses. Every message of the run is on the replica before the kill.
        assert client.wait(1, 5000) == 1
    wait_until(
        lambda: sum(handler_runs(records_client, "before-").values()) >= FAILOVER_BEFORE // 6,
        "the worker under way",
        log=worker,
    )
    with redis.Redis(connection_pool=sync_pool(sentinel_host)) as sender:
        sender.ping()
        master.kill()
        killed_at = time.monotonic()
        handled_at_kill = len(handler_runs(records_client, "before-"))
        # Until Sentinel has promoted the replica there is no master to take a send: the
        # sender's connection (the one send() uses) says so, and retrying is the sender's.
        with pytest.raises(redis.ConnectionError):
            sender.zadd(PROBE_KEY, {"probe": 0})
        worker.wait_for_line(r"Redis host 0 unreachable for channel 'faults'")
        wait_until(
            lambda: sentinel.master_port() == replica.port, "the replica promoted", log=worker
        )
        failover_s = time.monotonic() - killed_at
        # Then the same pool finds the new master through Sentinel: the send retried is taken.
        assert sender.zadd(PROBE_KEY, {"probe": 0}) == 1
    worker.wait_for_line(r"Redis host 0 is back for channel 'faults'", timeout_s=30)
    after = messages("after", FAILOVER_AFTER, sleep_s=0)
    with replica.client() as promoted:
        send(promoted, after)
        wait_until(
            lambda: (
                len(handler_runs(records_client, "")) == len(before) + len(after)
                and settled(promoted)
            ),
            "every message handled and acknowledged on the new master",
            timeout_s=40,
            log=worker,
        )
        dead = size(promoted, KEYS.dead)
    counters = stop(worker)
    runs = handler_runs(records_client, "")
    sent = len(before) + len(after)
    figures = {
        "sent_before_kill": len(before),
        "sent_after_failover": len(after),
        "handled_when_killed": handled_at_kill,
        "failover_s": round(failover_s, 1),
        "handler_runs": sum(runs.values()),
        "dead_lettered": dead,
        "lost": sent - len(runs),
        "summary": counters,
    }
    report("sentinel-failover", figures)
    assert failover_s > float(LEASE_S)
    assert figures["lost"] == dead == 0
    assert sum(runs.values()) <= sent + REDELIVERY_BOUND, figures
    # The same process followed the failover by itself.
    assert len(worker.matches(r"Worker \S+ consuming faults ")) == 1
    assert not worker.matches("Traceback|died unexpectedly"), worker.output


# Two layer hosts: one restarted, and one of two workers killed, mid-run

SHARDED_BEFORE = 1000
SHARDED_AFTER = 200


def send_round_robin(hosts: list[redis.Redis], batch: list[dict[str, Any]]) -> None:
    """Spread ``batch`` over the hosts as channels-redis's ``send()`` does: in turn."""
    for index, client in enumerate(hosts):
        send(client, batch[index :: len(hosts)])


@pytest.mark.timeout(90)
def test_two_layer_hosts_one_restarted_and_a_worker_sigkilled_lose_and_dead_letter_nothing(
    fleet: Fleet,
    redis_server: RedisServer,
    records_client: redis.Redis,
    servers: list[RedisServer],
) -> None:
    durable = ("--appendonly", "yes", "--appendfsync", "always")
    restarted, steady = (start(servers, RedisServer(*durable)) for _ in range(2))
    fleet.extra_env["LAYER_HOSTS"] = json.dumps([restarted.url, steady.url])
    victim, survivor = (fleet.start(redis_server.url, *OPTIONS) for _ in range(2))
    before = messages("before", SHARDED_BEFORE, sleep_s=0.01)
    after = messages("after", SHARDED_AFTER, sleep_s=0)
    with restarted.client() as first, steady.client() as second:
        send_round_robin([first, second], before)
        wait_until(
            lambda: sum(handler_runs(records_client, "before-").values()) >= SHARDED_BEFORE // 4,
            "both workers under way",
            log=survivor,
        )
    # appendfsync always: everything the host acknowledged is on disk when it is killed.
    restarted.kill()
    killed_at = time.monotonic()
    victim.process.kill()
    victim.wait_exit()
    handled_at_kill = len(handler_runs(records_client, "before-"))
    by_victim = sum(entry["pid"] == victim.pid for entry in records(records_client))
    survivor.wait_for_line(r"Redis host 0 unreachable for channel 'faults'")
    # Down longer than a lease: meanwhile the survivor takes over what the killed worker held on
    # the other host (no lease there is left expired; it may have held none there), and holds
    # leases on this one it cannot extend.
    with steady.client() as second:
        wait_until(
            lambda: (
                time.monotonic() - killed_at > 2 * float(LEASE_S)
                and int(second.zcount(KEYS.inflight, "-inf", time.time())) == 0
            ),
            "the killed worker's leases on the other host taken over",
            log=survivor,
        )
    down_s = time.monotonic() - killed_at
    restarted.start()
    survivor.wait_for_line(r"Redis host 0 is back for channel 'faults'", timeout_s=30)
    with restarted.client() as first, steady.client() as second:
        send_round_robin([first, second], after)
        wait_until(
            lambda: (
                len(handler_runs(records_client, "")) == len(before) + len(after)
                and settled(first)
                and settled(second)
            ),
            "every message handled and acknowledged on both hosts",
            timeout_s=40,
            log=survivor,
        )
        dead = size(first, KEYS.dead) + size(second, KEYS.dead)
    counters = stop(survivor)
    runs = handler_runs(records_client, "")
    sent = len(before) + len(after)
    figures = {
        "sent_before_faults": len(before),
        "sent_after_restart": len(after),
        "handled_when_killed": handled_at_kill,
        "handled_by_killed_worker": by_victim,
        "host_down_s": round(down_s, 1),
        "handler_runs": sum(runs.values()),
        "dead_lettered": dead,
        "lost": sent - len(runs),
        "survivor_summary": counters,
    }
    report("two-hosts-restart-and-sigkill", figures)
    assert by_victim > 0, "both workers should have been consuming"
    assert figures["lost"] == dead == 0
    assert sum(runs.values()) <= sent + REDELIVERY_BOUND, figures
    assert not survivor.matches("Traceback|died unexpectedly"), survivor.output
