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
    #: channels-redis's sorted set of queued messages, scored by send time: priority 0.
    queue: str
    #: Queued messages of priority ``n`` (not 0) are in ``level_prefix + str(n)``, a sorted set
    #: in the same format; the scripts append the level, so the format is only named here.
    level_prefix: str
    #: The priority levels (not 0) that may hold messages: level -> level.
    levels: str
    #: The level of every queued, leased or delayed message whose priority is not 0.
    member_levels: str
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
    #: Dead letter id -> the priority level it came from, for those not at level 0.
    dead_levels: str

    @classmethod
    def for_channel(cls, prefix: str, channel: str) -> ChannelKeys:
        own = f"{prefix}{SEPARATOR}"
        return cls(
            channel=channel,
            queue=channel_key(prefix, channel),
            level_prefix=f"{own}level:{channel}:",
            levels=f"{own}levels:{channel}",
            member_levels=f"{own}member-level:{channel}",
            inflight=f"{own}inflight:{channel}",
            delayed=f"{own}delayed:{channel}",
            attempts=f"{own}attempts:{channel}",
            first_attempt=f"{own}first:{channel}",
            dead=f"{own}dead:{channel}",
            dead_records=f"{own}dead-records:{channel}",
            dead_members=f"{own}dead-members:{channel}",
            dead_levels=f"{own}dead-levels:{channel}",
        )

    def level_key(self, level: int) -> str:
        """The sorted set of messages queued at priority ``level``: the channel key for 0."""
        return self.queue if level == 0 else f"{self.level_prefix}{level}"


def channel_key(prefix: str, channel: str, non_local_name: str | None = None) -> str:
    """channels-redis's sorted set of a channel; ``!`` channels use their non-local name."""
    return f"{prefix}{non_local_name if non_local_name is not None else channel}"


def health_key(prefix: str, worker_id: str) -> str:
    """A live worker's health record, with a TTL."""
    return f"{prefix}{SEPARATOR}health:{worker_id}"


def health_key_pattern(prefix: str) -> str:
    """A ``SCAN MATCH`` pattern for every ``health_key`` (for workers that keep no index)."""
    return health_key(prefix, "*")


def health_index_key(prefix: str) -> str:
    """The live workers' index beside their health records: worker id -> when its record
    expires (epoch seconds), a sorted set, so ``status`` reads records by key, not by ``SCAN``.
    """
    return f"{prefix}{SEPARATOR}health-index"


def rate_key(prefix: str, channel: str, bucket: int) -> str:
    """Messages completed on ``channel`` in one time bucket, for ``status``'s rate."""
    return f"{prefix}{SEPARATOR}rate:{channel}:{bucket}"


def task_result_key(prefix: str, result_id: str) -> str:
    """A ``django.tasks`` result of the channel-layer backend, JSON, on one host by id."""
    return f"{prefix}{SEPARATOR}task-result:{result_id}"


def task_rerun_key(prefix: str, result_id: str) -> str:
    """The id of the result a failed task was enqueued again as (from the admin), by its id."""
    return f"{prefix}{SEPARATOR}task-rerun:{result_id}"


def task_recent_key(prefix: str) -> str:
    """The most recently changed task results on one host: result id -> time of the change.

    A sorted set beside the results it lists, trimmed to a bound on every change.
    """
    return f"{prefix}{SEPARATOR}task-recent"


def task_progress_key(prefix: str, result_id: str) -> str:
    """A task's last progress report, JSON, on the host of its result and kept as long."""
    return f"{prefix}{SEPARATOR}task-progress:{result_id}"


def schedule_state_key(prefix: str, name: str, digest: str) -> str:
    """A schedule's state (first seen, last tick fired, by whom, its outcome), a hash.

    Keyed by the definition's digest, so a changed definition starts with fresh state.
    """
    return f"{prefix}{SEPARATOR}schedule:{name}:{digest}"


def schedule_tick_key(prefix: str, name: str, digest: str, tick_ms: int) -> str:
    """The claim of one tick of a schedule, then the mark that it fired; on the state's host."""
    return f"{prefix}{SEPARATOR}schedule-tick:{name}:{digest}:{tick_ms}"


def schedule_run_key(prefix: str, name: str, token: str) -> str:
    """One "run now" of a schedule, keyed by its confirmation's token: what it did, a string
    that expires; on the state's host."""
    return f"{prefix}{SEPARATOR}schedule-run:{name}:{token}"
