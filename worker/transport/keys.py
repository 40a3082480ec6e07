"""Names of the worker's own Redis keys, all derived from the layer prefix and a channel.

They sit beside the layer's keys under its prefix, after a separator channel names cannot contain
(``#``), so they never collide with a channel or with channels-redis's ``<channel>$inflight``.
Every per-channel key lives on the same host as the channel key it belongs to, so one Lua script
can move a message between them atomically.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "#cw#"


@dataclass(frozen=True, slots=True)
class ChannelKeys:
    """The keys for one channel on one host."""

    channel: str
    #: channels-redis's sorted set of queued messages, scored by send time.
    queue: str
    #: At-least-once leases: member -> lease deadline (epoch seconds).
    inflight: str
    #: Retries waiting for their backoff: member -> due time.
    delayed: str
    #: Attempts so far for members that failed or were redelivered.
    attempts: str
    #: Time of the first attempt for those members.
    first_attempt: str
    #: Dead letters: id -> time, id -> JSON record, id -> raw member.
    dead: str
    dead_records: str
    dead_members: str

    @classmethod
    def for_channel(cls, prefix: str, channel: str) -> ChannelKeys:
        own = f"{prefix}{SEPARATOR}"
        return cls(
            channel=channel,
            queue=channel_key(prefix, channel),
            inflight=f"{own}inflight:{channel}",
            delayed=f"{own}delayed:{channel}",
            attempts=f"{own}attempts:{channel}",
            first_attempt=f"{own}first:{channel}",
            dead=f"{own}dead:{channel}",
            dead_records=f"{own}dead-records:{channel}",
            dead_members=f"{own}dead-members:{channel}",
        )


def channel_key(prefix: str, channel: str, non_local_name: str | None = None) -> str:
    """channels-redis's sorted set of a channel; ``!`` channels use their non-local name."""
    return f"{prefix}{non_local_name if non_local_name is not None else channel}"


def health_key(prefix: str, worker_id: str) -> str:
    """A live worker's health record, with a TTL."""
    return f"{prefix}{SEPARATOR}health:{worker_id}"


def health_key_pattern(prefix: str) -> str:
    """A ``SCAN MATCH`` pattern for every ``health_key``."""
    return health_key(prefix, "*")


def rate_key(prefix: str, channel: str, bucket: int) -> str:
    """Messages completed on ``channel`` in one time bucket, for ``status``'s rate."""
    return f"{prefix}{SEPARATOR}rate:{channel}:{bucket}"


def task_result_key(prefix: str, result_id: str) -> str:
    """A ``django.tasks`` result of the channel-layer backend, JSON, on one host by id."""
    return f"{prefix}{SEPARATOR}task-result:{result_id}"


def task_recent_key(prefix: str) -> str:
    """The most recently changed task results on one host: result id -> time of the change.

    A sorted set beside the results it lists, trimmed to a bound on every change.
    """
    return f"{prefix}{SEPARATOR}task-recent"


def task_progress_key(prefix: str, result_id: str) -> str:
    """A task's last progress report, JSON, on the host of its result and kept as long."""
    return f"{prefix}{SEPARATOR}task-progress:{result_id}"
