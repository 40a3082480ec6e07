"""``runworker --metrics-port``: the Prometheus endpoint of one worker and of a supervisor."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_server import free_port
from tests.worker._ops import STARTED, Ops, runworker_command, stop, wait_for
from tests.worker.ops_project.consumers import OPS_CHANNEL
from tests.worker.process_helpers import WorkerProcess, wait_until
from worker.ops.metrics import DEFAULT_MAX_TYPES_PER_CHANNEL, OTHER_TYPES
from worker.transport.keys import ChannelKeys

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

KEYS = ChannelKeys.for_channel("asgi", OPS_CHANNEL)
RUN = {"channel": OPS_CHANNEL, "type": "ops.run"}
FAIL = {"channel": OPS_CHANNEL, "type": "ops.fail"}
CHANNEL = {"channel": OPS_CHANNEL}
# No proxy from the environment for loopback scrapes.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True)
class Scrape:
    """One read of ``/metrics``: sample values by name and labels, family types by name."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    types: dict[str, str]

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.samples.get((name, frozenset((labels or {}).items())))

    def labelled(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for sample, labels in self.samples if sample == name]


def scrape(port: int) -> Scrape | None:
    """The endpoint's metrics, None while it does not answer yet."""
    try:
        with _OPENER.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples, types)


Expected = list[tuple[str, dict[str, str] | None, float]]


def scrape_until(port: int, expected: Expected, log: WorkerProcess) -> Scrape:
    """Scrape until every ``(name, labels, value)`` in ``expected`` holds; the last scrape."""

    def matching() -> Scrape | None:
        found = scrape(port)
        if found is None:
            return None
        if all(found.value(name, labels) == value for name, labels, value in expected):
            return found
        return None

    return wait_for(matching, f"metrics {expected}", log=log)


@pytest.fixture
def ops(redis_url: str, tmp_path: Path) -> Iterator[Ops]:
    harness = Ops(redis_url, tmp_path)
    yield harness
    harness.close()


def test_metrics_count_received_completed_failed_and_dead_lettered_messages(ops: Ops) -> None:
    port = free_port()
    worker = ops.runworker(
        "--metrics-port", str(port), "--max-attempts", "1", "--health-interval-s", "0.5"
    )
    worker.wait_for_line(rf"Serving Prometheus metrics on http://127\.0\.0\.1:{port}/metrics")
    ops.send(*({"type": "ops.run", "id": f"ok{n}"} for n in range(3)))
    ops.send({"type": "ops.fail", "id": "bad"})
    wait_until(lambda: len(ops.handled_ids()) == 3, "three messages handled", log=worker)

    metrics = scrape_until(
        port,
        [
            ("channel_worker_messages_received_total", RUN, 3),
            ("channel_worker_messages_received_total", FAIL, 1),
            ("channel_worker_messages_completed_total", RUN, 3),
            ("channel_worker_messages_failed_total", FAIL, 1),
            ("channel_worker_messages_dead_lettered_total", FAIL, 1),
            ("channel_worker_handler_duration_seconds_count", RUN, 3),
            ("channel_worker_handler_duration_seconds_count", FAIL, 1),
            ("channel_worker_messages_in_flight", CHANNEL, 0),
            ("channel_worker_queue_messages", CHANNEL, 0),
            ("channel_worker_queue_oldest_message_age_seconds", CHANNEL, 0),
            ("channel_worker_redis_reconnects_total", None, 0),
        ],
        worker,
    )

    # Nothing completed or dead-lettered that should not have been, and no retries (1 attempt).
    assert metrics.labelled("channel_worker_messages_completed_total") == [RUN]
    assert metrics.labelled("channel_worker_messages_failed_total") == [FAIL]
    assert metrics.labelled("channel_worker_messages_dead_lettered_total") == [FAIL]
    assert metrics.labelled("channel_worker_messages_retried_total") == []
    buckets = metrics.labelled("channel_worker_handler_duration_seconds_bucket")
    assert {"le": "+Inf", **RUN} in buckets
    assert {"le": "0.001", **FAIL} in buckets
    assert (
        metrics.value("channel_worker_handler_duration_seconds_bucket", {"le": "+Inf", **RUN}) == 3
    )
    types = {
        "channel_worker_messages_received": "counter",
        "channel_worker_messages_completed": "counter",
        "channel_worker_messages_failed": "counter",
        "channel_worker_messages_dead_lettered": "counter",
        "channel_worker_redis_reconnects": "counter",
        "channel_worker_handler_duration_seconds": "histogram",
        "channel_worker_messages_in_flight": "gauge",
        "channel_worker_queue_messages": "gauge",
        "channel_worker_queue_oldest_message_age_seconds": "gauge",
    }
    assert {name: metrics.types.get(name) for name in types} == types
    assert stop(worker) == 0


def test_metrics_bound_the_type_label_under_distinct_message_types(ops: Ops) -> None:
    port = free_port()
    worker = ops.runworker("--metrics-port", str(port), "--max-attempts", "1")
    beyond = 50
    count = DEFAULT_MAX_TYPES_PER_CHANNEL + beyond
    # Types the consumer has no handler for: each fails once and is dead-lettered. In batches
    # under the layer's channel capacity (100).
    for start in range(0, count, beyond):
        ops.send(*({"type": f"ops.kind{n}", "id": f"k{n}"} for n in range(start, start + beyond)))
        wait_until(lambda: ops.client.zcard(KEYS.queue) == 0, "the batch taken", log=worker)

    other = {**CHANNEL, "type": OTHER_TYPES}
    metrics = scrape_until(
        port,
        [
            ("channel_worker_messages_received_total", other, beyond),
            ("channel_worker_messages_dead_lettered_total", other, beyond),
        ],
        worker,
    )
    for family in ("received", "failed", "dead_lettered"):
        labelled = metrics.labelled(f"channel_worker_messages_{family}_total")
        assert len(labelled) == DEFAULT_MAX_TYPES_PER_CHANNEL + 1, family
    assert stop(worker) == 0
    bound_reached = rf"Channel {OPS_CHANNEL} has had {DEFAULT_MAX_TYPES_PER_CHANNEL} distinct"
    assert len(worker.matches(bound_reached)) == 1, worker.output


def test_metrics_sample_in_flight_work_and_the_queue_behind_it(ops: Ops) -> None:
    port = free_port()
    worker = ops.runworker(
        "--metrics-port", str(port),
        "--concurrency", "1",
        "--prefetch", "1",
        "--health-interval-s", "0.5",
        "--shutdown-timeout-s", "1",
    )  # fmt: skip
    # One handler busy, one message prefetched, one left in Redis.
    ops.send(*({"type": "ops.run", "id": f"slow{n}", "sleep_s": 60} for n in range(3)))
    wait_until(
        lambda: ops.client.zcard(KEYS.queue) == 1, "two messages taken from Redis", log=worker
    )
    # The one left waits as if sent two minutes ago.
    waiting: Any = ops.client.zrange(KEYS.queue, 0, -1)
    ops.client.zadd(KEYS.queue, {waiting[0]: time.time() - 120}, xx=True)

    def sampled() -> Scrape | None:
        found = scrape(port)
        if found is None:
            return None
        age = found.value("channel_worker_queue_oldest_message_age_seconds", CHANNEL)
        in_flight = found.value("channel_worker_messages_in_flight", CHANNEL)
        queued = found.value("channel_worker_queue_messages", CHANNEL)
        return found if (in_flight, queued) == (1, 1) and age is not None and age >= 120 else None

    metrics = wait_for(sampled, "in-flight and queue gauges", log=worker)
    age = metrics.value("channel_worker_queue_oldest_message_age_seconds", CHANNEL)
    assert age is not None
    assert age < 180
    assert metrics.value("channel_worker_messages_received_total", RUN) == 2
    assert metrics.value("channel_worker_messages_completed_total", RUN) is None
    assert stop(worker) == 0


def test_supervisor_serves_the_sum_of_its_workers_metrics(ops: Ops) -> None:
    port = free_port()
    supervisor = ops.start(
        runworker_command(
            "--processes", "2",
            "--concurrency", "1",
            "--prefetch", "1",
            "--metrics-port", str(port),
            "--health-interval-s", "0.5",
            OPS_CHANNEL,
        )
    )  # fmt: skip
    children = {int(match["pid"]) for match in supervisor.wait_for_lines(STARTED, 2)}
    # Each child holds at most two messages at a time, so both take part.
    count = 12
    ops.send(*({"type": "ops.run", "id": f"m{n}", "sleep_s": 0.1} for n in range(count)))
    wait_until(lambda: len(ops.handled_ids()) == count, f"{count} messages", log=supervisor)
    assert {entry["pid"] for entry in ops.handled()} == children

    metrics = scrape_until(
        port,
        [
            ("channel_worker_messages_received_total", RUN, count),
            ("channel_worker_messages_completed_total", RUN, count),
            ("channel_worker_handler_duration_seconds_count", RUN, count),
            ("channel_worker_messages_in_flight", CHANNEL, 0),
            ("channel_worker_queue_messages", CHANNEL, 0),
            ("channel_worker_redis_reconnects_total", None, 0),
        ],
        supervisor,
    )
    assert metrics.labelled("channel_worker_messages_failed_total") == []
    assert stop(supervisor) == 0
    supervisor.wait_for_lines(r"Worker stopped: received=\d+ completed=\d+ failed=0", 2)
