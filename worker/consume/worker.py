"""The ``Worker``: consume named channels, run handlers concurrently, stop in phases."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from channels_redis.core import RedisChannelLayer

from worker.config import ChannelConfig
from worker.constants import (
    DEFAULT_EXPIRY_WARNING_S,
    DEFAULT_SHUTDOWN_TIMEOUT_S,
    POLL_TIMEOUT_S,
)
from worker.consume.connections import Lent, lending
from worker.consume.delivery import INVALID_TYPE, message_label
from worker.consume.event_loop import running_loop_name
from worker.consume.instance import InstanceSlot
from worker.consume.listener import ChannelListener, supervise
from worker.consume.maintenance import maintain
from worker.consume.outage import RedisHosts
from worker.consume.pauses import noticing_continues
from worker.consume.prefetch import Prefetch
from worker.consume.settle import Settlement
from worker.errors import ConfigurationError
from worker.names import NAME_RULE, is_valid_channel_name, new_worker_id
from worker.ops.health import DEFAULT_HEALTH_INTERVAL_S, HealthReporter
from worker.ops.metrics import NullMetrics
from worker.ops.stats import Stats
from worker.transport.arrivals import ArrivalWatch
from worker.transport.dead_letters import DeadLetterBounds, DeadLetters
from worker.transport.keys import ChannelKeys
from worker.transport.layer import connect, describe_hosts, harden_layer, host_descriptions
from worker.transport.queue import ChannelQueue

if TYPE_CHECKING:
    from pathlib import Path

    from redis.asyncio import Redis

    from routing.types import ASGIApp
    from worker.consume.delivery import Delivery

logger = logging.getLogger(__name__)

# How long a cancelled task gets to end before it is cancelled again (see _cancel_and_wait).
_CANCEL_RETRY_S = 0.5


@dataclass(slots=True)
class _ChannelRuntime:
    channel: str
    config: ChannelConfig
    prefetch: Prefetch
    listener: ChannelListener
    settlement: Settlement
    slots: list[InstanceSlot]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    pollers: list[asyncio.Task[None]] = field(default_factory=list)
    background: list[asyncio.Task[None]] = field(default_factory=list)


class Companion(Protocol):
    """A long-lived task the worker runs and supervises beside its channels (a schedule's loop).

    ``problem()`` says why it is not doing its job, or None; health reports it.
    """

    name: str

    async def run(self) -> None: ...

    def problem(self) -> str | None: ...


class Worker:
    """Consume ``channels`` from a channels-redis ``layer`` and run ``application`` on them.

    Each message becomes the next ``receive()`` of an application instance created with the
    scope ``{"type": "channel", "channel": name}``; ``concurrency`` instances run per channel.

    Delivery guarantees (per channel, ``ChannelConfig.delivery``):

    - ``at-least-once`` (default): a message stays in Redis under a lease held by this worker
      until its handler finished, i.e. until the instance asks ``receive()`` for the next one.
      If the worker dies, another live worker redelivers it once the lease expires, so a message
      may be handled twice but is never lost to a crash. An idle channel waits for a Redis
      key-tracking notice rather than blocking in Redis.
    - ``at-most-once``: a message leaves Redis when the worker takes it, like channels-redis's
      own ``receive()``; a worker killed mid-handler loses it and the (bounded) prefetched ones.

    In both modes a handler that raises or times out is retried with backoff up to
    ``max_attempts`` (``message["__attempt__"]`` is the attempt number), then dead-lettered with
    its reason; undecodable, oversized or type-less messages are dead-lettered at once; and on a
    graceful stop, messages taken but not started go back to the head of their channel.

    ::

        stop = asyncio.Event()
        worker = Worker(application, ["thumbnails-generate"], layer, stop_event=stop)
        await worker.run()  # returns after stop.set(), once drained
    """

    def __init__(
        self,
        application: ASGIApp,
        channels: Iterable[str],
        layer: RedisChannelLayer,
        *,
        configs: Mapping[str, ChannelConfig] | None = None,
        default_config: ChannelConfig | None = None,
        shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S,
        stop_event: asyncio.Event | None = None,
        poll_timeout_s: float = POLL_TIMEOUT_S,
        dead_letter_bounds: DeadLetterBounds | None = None,
        expiry_warning_s: float = DEFAULT_EXPIRY_WARNING_S,
        metrics: NullMetrics | None = None,
        health_interval_s: float = DEFAULT_HEALTH_INTERVAL_S,
        health_directory: Path | None = None,
    ) -> None:
        self.application = application
        self.channels = list(dict.fromkeys(channels))
        if not self.channels:
            raise ConfigurationError("Worker needs at least one channel name to consume.")
        for channel in self.channels:
            check_channel_name(layer, channel)
        self.layer = layer
        default = default_config or ChannelConfig()
        self.configs = {
            channel: (configs or {}).get(channel, default).validated(channel)
            for channel in self.channels
        }
        self.shutdown_timeout_s = shutdown_timeout_s
        self.stop_event = stop_event or asyncio.Event()
        self.poll_timeout_s = poll_timeout_s
        self.stats = Stats()
        self.dead_letter_bounds = dead_letter_bounds or DeadLetterBounds()
        self.expiry_warning_s = expiry_warning_s
        self.worker_id = new_worker_id()
        self.metrics = metrics or NullMetrics()
        self.health_interval_s = health_interval_s
        self.health_directory = health_directory
        #: What each layer host refuses now, as the worker's own calls found it.
        self.redis_hosts = RedisHosts(host_descriptions(layer), self.stats, self.metrics)
        self._clients: list[Redis] = []
        self._runtimes: dict[str, _ChannelRuntime] = {}
        self._companions: list[Companion] = []
        self._companion_tasks: list[asyncio.Task[None]] = []

    def add_companion(self, companion: Companion) -> None:
        """Run ``companion`` beside the channels, from start-up until the stop begins."""
        self._companions.append(companion)

    def stop(self) -> None:
        """Ask the worker to stop: stop receiving, drain, return what was not started."""
        self.stop_event.set()

    async def run(self) -> None:
        """Consume until the stop event is set, then shut down in phases."""
        # A stop (SIGSTOP) longer than message_timeout_s must not time out every handler.
        with noticing_continues():
            await self._run()

    async def _run(self) -> None:
        harden_layer(self.layer)
        self._clients = connect(self.layer, self.poll_timeout_s)
        self._dead_letters = DeadLetters(self.layer, self._clients, self.dead_letter_bounds)
        self._warn_about_expiry()
        health = self._health_reporter()
        health_task: asyncio.Task[None] | None = None
        lent: Lent | None = None
        try:
            with lending(self.layer, self._clients) as lent:
                for channel in self.channels:
                    self._runtimes[channel] = self._start_channel(channel)
            logger.info("%s, %s event loop", self.startup_line(), running_loop_name())
            health_task = asyncio.create_task(
                supervise("Health reporter", health.run, self.stats), name="health"
            )
            self._companion_tasks = [
                asyncio.create_task(
                    supervise(companion.name, companion.run, self.stats), name=companion.name
                )
                for companion in self._companions
            ]
            await self.stop_event.wait()
            await self._shutdown()
        finally:
            tasks = [health_task] if health_task is not None else []
            tasks += self._companion_tasks
            for runtime in self._runtimes.values():
                tasks += runtime.tasks + runtime.pollers + runtime.background
            await _cancel_and_wait(tasks)
            if lent is not None:
                await lent.scripts.aclose()
            await health.remove()
            await asyncio.gather(*(client.aclose() for client in self._clients))

    def _health_reporter(self) -> HealthReporter:
        return HealthReporter(
            worker_id=self.worker_id,
            channels=self.channels,
            prefix=self.layer.prefix,
            clients=self._clients,
            stats=self.stats,
            problem=self.listener_problem,
            in_flight=self.in_flight,
            completed=lambda: {
                channel: runtime.settlement.completed_count
                for channel, runtime in self._runtimes.items()
            },
            metrics=self.metrics,
            interval_s=self.health_interval_s,
            directory=self.health_directory,
            event_loop=running_loop_name(),
            channel_settings={
                channel: {"concurrency": config.concurrency, "delivery": config.delivery}
                for channel, config in self.configs.items()
            },
        )

    def listener_problem(self) -> str | None:
        """Why some channel is not being consumed, or None when every listener is alive.

        A listener retrying an unreachable Redis is alive: it resumes by itself. A Redis that
        answers but refuses the worker's commands (MISCONF, READONLY, BUSY...) or credentials
        is a problem while it lasts.
        """
        refused = self.redis_hosts.problem()
        if refused is not None:
            return refused
        for companion, task in zip(self._companions, self._companion_tasks, strict=False):
            problem = companion.problem()
            if task.done() and not self.stop_event.is_set():
                problem = problem or f"{companion.name} has stopped"
            if problem is not None:
                return problem
        for channel, runtime in self._runtimes.items():
            for index, task in enumerate(runtime.pollers):
                if task.done() and not runtime.listener.stopping:
                    return f"listener for channel {channel!r} on host {index} has stopped"
                crash = runtime.listener.crashed.get(index)
                if crash is not None:
                    return f"listener for channel {channel!r} on host {index} failed: {crash}"
        return None

    def message_type(self, member: bytes) -> str:
        """The label of a serialised message, for metrics about messages not being handled."""
        try:
            message = self.layer.deserialize(member)
        except Exception:
            return INVALID_TYPE
        return message_label(message) or INVALID_TYPE

    def in_flight(self) -> dict[str, int]:
        """Messages being handled now, per channel."""
        return {
            channel: sum(slot.busy for slot in runtime.slots)
            for channel, runtime in self._runtimes.items()
        }

    def startup_line(self) -> str:
        channels = ", ".join(
            f"{channel} (concurrency {config.concurrency}, prefetch {config.prefetch_limit}, "
            f"{config.delivery}, max_attempts {config.max_attempts})"
            for channel, config in self.configs.items()
        )
        return f"Worker {self.worker_id} consuming {channels} on {describe_hosts(self.layer)}"

    def _warn_about_expiry(self) -> None:
        expiry_s = float(self.layer.expiry)
        if expiry_s < self.expiry_warning_s:
            logger.warning(
                "The channel layer drops queued messages after expiry=%g s, so a backlog on %s "
                "older than that disappears while workers are down or busy; set the layer's "
                "'expiry' (and 'capacity') higher for task channels, e.g. 'expiry': 3600",
                expiry_s,
                ", ".join(map(repr, self.channels)),
            )

    def _start_channel(self, channel: str) -> _ChannelRuntime:
        config = self.configs[channel]
        keys = ChannelKeys.for_channel(self.layer.prefix, channel)
        queues = [ChannelQueue(client, keys, int(self.layer.expiry)) for client in self._clients]
        # A waiting poller holds one slot per host, so the bound is never below the host count.
        prefetch = Prefetch(max(config.prefetch_limit, len(queues)))
        settlement = Settlement(
            channel, config, queues, self._dead_letters, self.stats, self.worker_id, self.metrics,
            self.redis_hosts,
        )  # fmt: skip
        arrivals = [
            ArrivalWatch(client, keys.queue, f"channel {channel!r} on host {index}", [keys.levels])
            for index, client in enumerate(self._clients)
            if config.leased
        ]
        listener = ChannelListener(
            channel, config, self.layer, queues, prefetch, settlement, self.stats,
            self.poll_timeout_s, arrivals,
        )  # fmt: skip
        slots = [
            InstanceSlot(self.application, channel, config, prefetch, settlement, self.stats)
            for _ in range(config.concurrency)
        ]
        runtime = _ChannelRuntime(channel, config, prefetch, listener, settlement, slots)
        # Every long-lived task is supervised: whatever escapes it is logged and it restarts.
        runtime.tasks = [
            asyncio.create_task(
                supervise(f"Instance slot #{number} of channel {channel!r}", slot.run, self.stats),
                name=f"instance {channel} #{number}",
            )
            for number, slot in enumerate(slots)
        ]
        runtime.pollers = [
            asyncio.create_task(
                supervise(
                    f"Listener for channel {channel!r} on host {index}",
                    functools.partial(listener.poll, index),
                    self.stats,
                ),
                name=f"listener {channel} host {index}",
            )
            for index in range(len(queues))
        ]
        runtime.background = [
            *(
                asyncio.create_task(
                    supervise(f"Arrival watch of {watch.label}", watch.run, self.stats),
                    name=f"arrivals {channel} host {index}",
                )
                for index, watch in enumerate(arrivals)
            ),
            asyncio.create_task(
                supervise(
                    f"Acknowledgements of channel {channel!r}",
                    settlement.flush_acks_forever,
                    self.stats,
                ),
                name=f"acks {channel}",
            ),
            asyncio.create_task(
                supervise(
                    f"Maintenance of channel {channel!r}",
                    functools.partial(maintain, settlement, self.message_type),
                    self.stats,
                ),
                name=f"maintenance {channel}",
            ),
        ]
        return runtime

    async def _shutdown(self) -> None:
        logger.info("Stopping: no new messages; draining in-flight handlers")
        # Companions (schedules) stop first: nothing new is sent while the channels drain.
        await _cancel_and_wait(self._companion_tasks)
        runtimes = list(self._runtimes.values())
        # Stop pollers first so nothing new is taken while handlers drain.
        for runtime in runtimes:
            runtime.listener.stop()
            for slot in runtime.slots:
                slot.drain()
        pollers = [task for runtime in runtimes for task in runtime.pollers]
        await _wait_or_cancel(pollers, self.poll_timeout_s + 2.0)
        slots = [slot for runtime in runtimes for slot in runtime.slots]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(slot.idle() for slot in slots)), self.shutdown_timeout_s
            )
        except TimeoutError:
            busy = sum(slot.busy for slot in slots)
            logger.warning(
                "Shutdown timeout of %.1f s reached; cancelling %d handler(s)",
                self.shutdown_timeout_s,
                busy,
            )
        await _cancel_and_wait([task for runtime in runtimes for task in runtime.tasks])
        await self._return_unfinished(runtimes)
        for runtime in runtimes:
            await _cancel_and_wait(runtime.background)
            if not await runtime.settlement.flush_acks():
                logger.warning(
                    "Could not acknowledge %d finished message(s) on channel %r before stopping "
                    "(%s); their leases will expire and they will be handled again",
                    runtime.settlement.unacknowledged(),
                    runtime.channel,
                    self.redis_hosts.problem() or "Redis unreachable",
                )
        logger.info("Worker stopped: %s", self.stats.summary())

    async def _return_unfinished(self, runtimes: list[_ChannelRuntime]) -> None:
        """Put back what was taken but not finished, so a graceful stop loses nothing.

        Cancelled handlers count as ``cancelled``; under at-least-once their messages go back
        with the unstarted ones, under at-most-once they are dropped, as that mode promises.
        """
        for runtime in runtimes:
            unfinished: list[Delivery] = []
            for slot in runtime.slots:
                delivery = slot.cancelled()
                if delivery is None:
                    continue
                self.stats.cancelled += 1
                if runtime.config.leased:
                    unfinished.append(delivery)
                else:
                    logger.warning(
                        "Cancelled %r on channel %r at shutdown; at-most-once: not returned",
                        delivery.label,
                        runtime.channel,
                    )
            unfinished += runtime.prefetch.drain()
            await runtime.settlement.give_back(unfinished)


async def _wait_or_cancel(tasks: list[asyncio.Task[None]], timeout_s: float) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    await _cancel_and_wait(list(pending))
    await asyncio.gather(*tasks, return_exceptions=True)


async def _cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended.

    One cancel is not always enough on Python 3.11: redis-py wraps socket writes in
    ``asyncio.wait_for``, which there swallows a cancel that lands just as the write completes,
    so a task doing Redis I/O may go on running. Cancel again until all have ended.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_CANCEL_RETRY_S)
    await asyncio.gather(*tasks, return_exceptions=True)


def check_channel_name(layer: RedisChannelLayer, channel: str) -> None:
    """Reject names channels-redis would refuse, and process-local ``!`` channels."""
    if not is_valid_channel_name(layer, channel, process_local=False):
        raise ConfigurationError(
            f"Channel name {channel!r} is not valid: use {NAME_RULE}, without '!' "
            "(process-local channels are served by the process that created them)."
        )
