"""Prometheus metrics (prometheus-client), enabled with ``--metrics-port``.

With ``--processes N`` the supervisor serves the metrics of all its children, collected through
prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set before they start).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

logger = logging.getLogger(__name__)

NAMESPACE = "channel_worker"
# Handler durations from sub-millisecond no-ops to ten-minute jobs.
DURATION_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)
# How late a schedule's tick fires: a claim round trip, a takeover after a lease, a stall.
LATENESS_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)
# Distinct message types per channel that get a ``type`` label of their own
# (``CHANNEL_WORKER["METRICS_MAX_TYPES"]``); later ones are counted under OTHER_TYPES.
DEFAULT_MAX_TYPES_PER_CHANNEL = 100
# A longer type is no name a dashboard would show; it is counted under OTHER_TYPES.
MAX_TYPE_LABEL_CHARS = 100
OTHER_TYPES = "(other)"


class NullMetrics:
    """Records nothing: the default, so the hot path costs a no-op call when metrics are off."""

    def received(self, channel: str, message_type: str) -> None:
        pass

    def completed(self, channel: str, message_type: str, duration_s: float) -> None:
        pass

    def failed(self, channel: str, message_type: str, duration_s: float) -> None:
        pass

    def retried(self, channel: str, message_type: str) -> None:
        pass

    def dead_lettered(self, channel: str, message_type: str) -> None:
        pass

    def redelivered(self, channel: str, message_type: str) -> None:
        pass

    def reconnected(self) -> None:
        pass

    def sample(self, channel: str, in_flight: int, queued: int, oldest_age_s: float) -> None:
        pass

    def schedule_fired(self, schedule: str, lateness_s: float) -> None:
        pass

    def schedule_skipped(self, schedule: str) -> None:
        pass

    def schedule_failed(self, schedule: str) -> None:
        pass


class TypeLabels:
    """The ``type`` label value for each message: bounded, because senders choose the type.

    Each channel's first ``max_per_channel`` distinct types are their own label value; later
    types, and types longer than MAX_TYPE_LABEL_CHARS, count as OTHER_TYPES. Without the bound
    every new type would add series, and memory, for the life of the process.
    """

    def __init__(self, max_per_channel: int = DEFAULT_MAX_TYPES_PER_CHANNEL) -> None:
        self.max_per_channel = max_per_channel
        self._seen: dict[str, set[str]] = {}
        self._full: set[str] = set()

    def __call__(self, channel: str, message_type: str) -> str:
        seen = self._seen.setdefault(channel, set())
        if message_type in seen:
            return message_type
        if len(message_type) > MAX_TYPE_LABEL_CHARS:
            return OTHER_TYPES
        if len(seen) < self.max_per_channel:
            seen.add(message_type)
            return message_type
        if channel not in self._full:
            self._full.add(channel)
            logger.warning(
                "Channel %s has had %d distinct message types: further types are counted as "
                'type="%s" in metrics (raise CHANNEL_WORKER["METRICS_MAX_TYPES"] to see more)',
                channel,
                self.max_per_channel,
                OTHER_TYPES,
            )
        return OTHER_TYPES


class Metrics(NullMetrics):
    """The worker's metrics on a prometheus-client registry (the default one unless given)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        max_types_per_channel: int = DEFAULT_MAX_TYPES_PER_CHANNEL,
    ) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        self._type = TypeLabels(max_types_per_channel)
        registry = registry or REGISTRY
        labels = ("channel", "type")

        def counter(name: str, text: str, names: tuple[str, ...] = labels) -> Counter:
            return Counter(name, text, names, namespace=NAMESPACE, registry=registry)

        self._received = counter("messages_received", "Messages taken from a channel.")
        self._completed = counter("messages_completed", "Messages whose handler finished.")
        self._failed = counter("messages_failed", "Handler attempts that raised or timed out.")
        self._retried = counter("messages_retried", "Failed messages scheduled for a retry.")
        self._dead = counter("messages_dead_lettered", "Messages moved to dead letters.")
        self._redelivered = counter(
            "messages_redelivered", "Messages put back after the worker holding them stopped."
        )
        self._reconnects = counter(
            "redis_reconnects", "Times a lost Redis connection came back.", ()
        )
        self._duration = Histogram(
            "handler_duration_seconds",
            "Time from a handler taking a message to it finishing or failing.",
            labels,
            namespace=NAMESPACE,
            registry=registry,
            buckets=DURATION_BUCKETS_S,
        )
        self._in_flight = Gauge(
            "messages_in_flight",
            "Messages being handled now.",
            ("channel",),
            namespace=NAMESPACE,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._queued = Gauge(
            "queue_messages",
            "Messages waiting in the channel, over all layer hosts.",
            ("channel",),
            namespace=NAMESPACE,
            registry=registry,
            multiprocess_mode="max",
        )
        self._oldest = Gauge(
            "queue_oldest_message_age_seconds",
            "Age of the oldest waiting message in the channel.",
            ("channel",),
            namespace=NAMESPACE,
            registry=registry,
            multiprocess_mode="max",
        )
        # Schedule names come from settings, so the ``schedule`` label is bounded.
        self._schedule_fires = counter(
            "schedule_fires", "Ticks of a schedule this worker fired.", ("schedule",)
        )
        self._schedule_skips = counter(
            "schedule_skips", "Missed ticks dropped by the 'skip' policy.", ("schedule",)
        )
        self._schedule_failures = counter(
            "schedule_failures", "Ticks whose enqueue or send failed.", ("schedule",)
        )
        self._schedule_lateness = Histogram(
            "schedule_lateness_seconds",
            "Time from a tick (with its jitter) to its fire.",
            ("schedule",),
            namespace=NAMESPACE,
            registry=registry,
            buckets=LATENESS_BUCKETS_S,
        )

    def received(self, channel: str, message_type: str) -> None:
        self._received.labels(channel, self._type(channel, message_type)).inc()

    def completed(self, channel: str, message_type: str, duration_s: float) -> None:
        label = self._type(channel, message_type)
        self._completed.labels(channel, label).inc()
        self._duration.labels(channel, label).observe(duration_s)

    def failed(self, channel: str, message_type: str, duration_s: float) -> None:
        label = self._type(channel, message_type)
        self._failed.labels(channel, label).inc()
        self._duration.labels(channel, label).observe(duration_s)

    def retried(self, channel: str, message_type: str) -> None:
        self._retried.labels(channel, self._type(channel, message_type)).inc()

    def dead_lettered(self, channel: str, message_type: str) -> None:
        self._dead.labels(channel, self._type(channel, message_type)).inc()

    def redelivered(self, channel: str, message_type: str) -> None:
        self._redelivered.labels(channel, self._type(channel, message_type)).inc()

    def reconnected(self) -> None:
        self._reconnects.inc()

    def sample(self, channel: str, in_flight: int, queued: int, oldest_age_s: float) -> None:
        self._in_flight.labels(channel).set(in_flight)
        self._queued.labels(channel).set(queued)
        self._oldest.labels(channel).set(oldest_age_s)

    def schedule_fired(self, schedule: str, lateness_s: float) -> None:
        self._schedule_fires.labels(schedule).inc()
        self._schedule_lateness.labels(schedule).observe(max(lateness_s, 0.0))

    def schedule_skipped(self, schedule: str) -> None:
        self._schedule_skips.labels(schedule).inc()

    def schedule_failed(self, schedule: str) -> None:
        self._schedule_failures.labels(schedule).inc()


def serve(port: int, host: str) -> None:
    """Serve ``/metrics`` over http from a background thread.

    In multiprocess mode the registry collects every process's files, so one endpoint shows
    the sum of all workers.
    """
    from prometheus_client import CollectorRegistry, start_http_server

    registry: CollectorRegistry | None = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    if registry is None:
        start_http_server(port, addr=host)
    else:
        start_http_server(port, addr=host, registry=registry)
    logger.info("Serving Prometheus metrics on http://%s:%d/metrics", host, port)
