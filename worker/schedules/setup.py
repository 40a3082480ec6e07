"""The project's schedules, checked against its tasks and routers, and the loops a worker runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from worker.errors import ConfigurationError, SendError
from worker.names import is_task_channel
from worker.schedules.definitions import Schedule, load_schedules
from worker.schedules.loop import ScheduleLoop
from worker.sending.api import prepare
from worker.tasks.compat import InvalidTask
from worker.tasks.results import load_task

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer

    from worker.consume.outage import RedisHosts
    from worker.ops.metrics import NullMetrics
    from worker.schedules.clock import Clock


def project_schedules(worker_settings: Mapping[str, Any] | None) -> dict[str, Schedule]:
    """``CHANNEL_WORKER["SCHEDULES"]``, checked: a mistake raises ``ConfigurationError``."""
    raw = (worker_settings or {}).get("SCHEDULES")
    return load_schedules(raw, task_queue=_task_queue, channel_problem=_channel_problem)


def schedule_loops(
    schedules: Iterable[Schedule],
    channels: Iterable[str],
    layer_alias: str,
    layer: RedisChannelLayer,
    worker_id: str,
    *,
    metrics: NullMetrics | None = None,
    clock: Clock | None = None,
    lease_s: float | None = None,
    hosts: RedisHosts | None = None,
) -> list[ScheduleLoop]:
    """A loop for each schedule whose channel this worker serves, on its layer."""
    served = set(channels)
    extra: dict[str, Any] = {} if lease_s is None else {"lease_s": lease_s}
    return [
        ScheduleLoop(schedule, layer, worker_id, metrics=metrics, clock=clock, hosts=hosts, **extra)
        for schedule in schedules
        if schedule.channel in served and schedule.layer == layer_alias
    ]


def _task_queue(path: str) -> str:
    try:
        return load_task(path).queue_name
    except InvalidTask as error:
        raise ValueError(str(error)) from None


def _asgi_application() -> str | None:
    from django.conf import settings

    return getattr(settings, "ASGI_APPLICATION", None)


def _channel_problem(channel: str, layer: str, message: Mapping[str, Any]) -> str | None:
    """Whatever ``send()`` would refuse about ``message`` on ``channel``: its name, its form,
    a channel no router serves, a type its consumer has no handler for, a task queue no
    backend declares."""
    if not is_task_channel(channel) and not _asgi_application():
        # send() lets such a message through (a tasks-only project checks nothing), but no
        # runworker would serve the channel, so the schedule would never fire.
        return (
            f"channel {channel!r} has no consumer because ASGI_APPLICATION is not set; set it to "
            f"the application whose ChannelNameRouter routes {channel!r} and run `runworker "
            f"{channel}`, or schedule a task instead."
        )
    try:
        prepare(channel, dict(message), layer)
    except (SendError, ConfigurationError) as error:
        return str(error)
    return None
