"""The ``type`` label of the metrics is bounded: senders choose the type, not the operator."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from worker.config import worker_count_setting
from worker.errors import ConfigurationError
from worker.ops.metrics import (
    DEFAULT_MAX_TYPES_PER_CHANNEL,
    MAX_TYPE_LABEL_CHARS,
    OTHER_TYPES,
    Metrics,
)

DISTINCT_TYPES = 20_000


def type_labels(registry: CollectorRegistry, family: str) -> dict[str, float]:
    """The value of each ``type`` series of one counter family, by type."""
    values: dict[str, float] = {}
    for metric in registry.collect():
        if metric.name != family:
            continue
        for sample in metric.samples:
            if sample.name == f"{family}_total":
                values[sample.labels["type"]] = sample.value
    return values


def series_count(registry: CollectorRegistry) -> int:
    return sum(len(metric.samples) for metric in registry.collect())


def record_everything(metrics: Metrics, channel: str, message_type: str) -> None:
    metrics.received(channel, message_type)
    metrics.completed(channel, message_type, 0.01)
    metrics.failed(channel, message_type, 0.01)
    metrics.retried(channel, message_type)
    metrics.dead_lettered(channel, message_type)
    metrics.redelivered(channel, message_type)


def test_twenty_thousand_distinct_types_keep_the_series_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    record_everything(metrics, "email", "email.send")
    per_type = series_count(registry)

    with caplog.at_level(logging.WARNING, logger="worker.ops.metrics"):
        for number in range(DISTINCT_TYPES):
            record_everything(metrics, "email", f"hostile.{number}")

    # The first types keep their own label, every later one shares "(other)".
    assert series_count(registry) <= per_type * (DEFAULT_MAX_TYPES_PER_CHANNEL + 1)
    received = type_labels(registry, "channel_worker_messages_received")
    assert len(received) == DEFAULT_MAX_TYPES_PER_CHANNEL + 1
    assert received["email.send"] == 1
    assert received[OTHER_TYPES] == DISTINCT_TYPES - (DEFAULT_MAX_TYPES_PER_CHANNEL - 1)
    assert sum(received.values()) == DISTINCT_TYPES + 1
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("Channel email has had 100 distinct message types")
    assert 'CHANNEL_WORKER["METRICS_MAX_TYPES"]' in warnings[0]


def test_types_seen_before_the_bound_keep_their_label_after_it() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_types_per_channel=2)
    for message_type in ("a", "b", "c", "a", "d", "b"):
        metrics.received("email", message_type)

    assert type_labels(registry, "channel_worker_messages_received") == {
        "a": 2,
        "b": 2,
        OTHER_TYPES: 2,
    }


def test_the_bound_is_per_channel_and_warns_once_per_channel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_types_per_channel=1)
    with caplog.at_level(logging.WARNING, logger="worker.ops.metrics"):
        for channel in ("email", "thumbnails"):
            for message_type in ("first", "second", "third"):
                metrics.received(channel, message_type)

    received = [
        (sample.labels["channel"], sample.labels["type"], sample.value)
        for metric in registry.collect()
        if metric.name == "channel_worker_messages_received"
        for sample in metric.samples
        if sample.name.endswith("_total")
    ]
    assert sorted(received) == [
        ("email", OTHER_TYPES, 2),
        ("email", "first", 1),
        ("thumbnails", OTHER_TYPES, 2),
        ("thumbnails", "first", 1),
    ]
    assert [record.getMessage().split(" has had")[0] for record in caplog.records] == [
        "Channel email",
        "Channel thumbnails",
    ]


def test_an_overlong_type_is_counted_as_other_without_using_up_the_bound() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_types_per_channel=1)
    metrics.received("email", "x" * (MAX_TYPE_LABEL_CHARS + 1))
    metrics.received("email", "email.send")

    assert type_labels(registry, "channel_worker_messages_received") == {
        OTHER_TYPES: 1,
        "email.send": 1,
    }


def test_the_bound_setting_is_checked() -> None:
    assert worker_count_setting(None, "METRICS_MAX_TYPES", 100) == 100
    assert worker_count_setting({"METRICS_MAX_TYPES": 5}, "METRICS_MAX_TYPES", 100) == 5
    for wrong in (0, 2.5, "many", True):
        with pytest.raises(ConfigurationError, match=r"'METRICS_MAX_TYPES'.*an integer >= 1"):
            worker_count_setting({"METRICS_MAX_TYPES": wrong}, "METRICS_MAX_TYPES", 100)
