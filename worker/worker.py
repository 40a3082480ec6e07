"""The ``Worker``: consume named channels, run handlers concurrently, stop in phases."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from channels_redis.core import RedisChannelLayer

from worker.config import ChannelConfig
from worker.constants import DEFAULT_SHUTDOWN_TIMEOUT_S, POLL_TIMEOUT_S
from worker.errors import ConfigurationError
from worker.instance import InstanceSlot
from worker.keys import ChannelKeys
from worker.layer import connect, describe_hosts, harden_layer
from worker.listener import REDIS_DOWN, ChannelListener, supervise
from worker.prefetch import Prefetch
from worker.queue import ChannelQueue
from worker.stats import Stats

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from routing.types import ASGIApp
    from worker.delivery import Delivery, InvalidMessage
    from worker.queue import Popped

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _ChannelRuntime:
    channel: str
    config: ChannelConfig
    prefetch: Prefetch
    listener: ChannelListener
    slots: list[InstanceSlot]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    pollers: list[asyncio.Task[None]] = field(default_factory=list)


class Worker:
    """Consume ``channels`` from a channels-redis ``layer`` and run ``application`` on them.

    Each message becomes the next ``receive()`` of an application instance created with the
    scope ``{"type": "channel", "channel": name}``; ``concurrency`` instances run per channel.

    Delivery is at-most-once: a message is removed from Redis when the worker takes it, so a
    worker killed mid-handler loses that message and the (bounded) prefetched ones. A handler
    that raises is logged and counted, and its message is not retried. On a graceful stop,
    messages taken but not started go back to the head of their channel.

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
        self._clients: list[Redis] = []
        self._runtimes: dict[str, _ChannelRuntime] = {}

    def stop(self) -> None:
        """Ask the worker to stop: stop receiving, drain, return what was not started."""
        self.stop_event.set()

    async def run(self) -> None:
        """Consume until the stop event is set, then shut down in phases."""
        harden_layer(self.layer)
        self._clients = connect(self.layer, self.poll_timeout_s)
        try:
            for channel in self.channels:
                self._runtimes[channel] = self._start_channel(channel)
            logger.info("%s", self.startup_line())
            await self.stop_event.wait()
            await self._shutdown()
        finally:
            for runtime in self._runtimes.values():
                for task in runtime.tasks + runtime.pollers:
                    task.cancel()
            await asyncio.gather(*(client.aclose() for client in self._clients))

    def startup_line(self) -> str:
        channels = ", ".join(
            f"{channel} (concurrency {config.concurrency}, prefetch {config.prefetch_limit})"
            for channel, config in self.configs.items()
        )
        return (
            f"Worker consuming {channels} on {describe_hosts(self.layer)}; "
            f"delivery {'/'.join(sorted({c.delivery for c in self.configs.values()}))}"
        )

    def _start_channel(self, channel: str) -> _ChannelRuntime:
        config = self.configs[channel]
        keys = ChannelKeys.for_channel(self.layer.prefix, channel)
        queues = [ChannelQueue(client, keys, int(self.layer.expiry)) for client in self._clients]
        # A waiting poller holds one slot per host, so the bound is never below the host count.
        prefetch = Prefetch(max(config.prefetch_limit, len(queues)))
        listener = ChannelListener(
            channel,
            self.layer,
            queues,
            prefetch,
            self.stats,
            self._on_invalid,
            self.poll_timeout_s,
        )
        slots = [
            InstanceSlot(self.application, channel, prefetch, self.stats)
            for _ in range(config.concurrency)
        ]
        runtime = _ChannelRuntime(channel, config, prefetch, listener, slots)
        runtime.tasks = [
            asyncio.create_task(slot.run(), name=f"instance {channel} #{number}")
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
        return runtime

    def _on_invalid(
        self, channel: str, host_index: int, popped: Popped, invalid: InvalidMessage
    ) -> None:
        logger.error(
            "Discarded a message on channel %r (host %d) that %s: %r",
            channel,
            host_index,
            invalid,
            popped.member[:200],
        )

    async def _shutdown(self) -> None:
        logger.info("Stopping: no new messages; draining in-flight handlers")
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
        instances = [task for runtime in runtimes for task in runtime.tasks]
        for task in instances:
            task.cancel()
        await asyncio.gather(*instances, return_exceptions=True)
        for slot in slots:
            if slot.cancelled() is not None:
                self.stats.cancelled += 1
        await self._return_prefetched(runtimes)
        logger.info("Worker stopped: %s", self.stats.summary())

    async def _return_prefetched(self, runtimes: list[_ChannelRuntime]) -> None:
        for runtime in runtimes:
            by_host: dict[int, list[Delivery]] = defaultdict(list)
            for delivery in runtime.prefetch.drain():
                by_host[delivery.host_index].append(delivery)
            for index, deliveries in by_host.items():
                queue = runtime.listener.queues[index]
                try:
                    await queue.give_back([d.popped.member for d in deliveries])
                except REDIS_DOWN as error:
                    logger.error(
                        "Could not return %d message(s) to channel %r on host %d: %s; "
                        "they are lost",
                        len(deliveries),
                        runtime.channel,
                        index,
                        error,
                    )
                    continue
                self.stats.returned += len(deliveries)
                logger.info(
                    "Returned %d unstarted message(s) to channel %r",
                    len(deliveries),
                    runtime.channel,
                )


async def _wait_or_cancel(tasks: list[asyncio.Task[None]], timeout_s: float) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def check_channel_name(layer: RedisChannelLayer, channel: str) -> None:
    """Reject names channels-redis would refuse, and process-local ``!`` channels."""
    valid = isinstance(channel, str) and "!" not in channel
    if valid:
        try:
            valid = bool(layer.require_valid_channel_name(channel))
        except TypeError:
            valid = False
    if not valid:
        raise ConfigurationError(
            f"Channel name {channel!r} is not valid: use ASCII letters, digits, hyphens, "
            "underscores and periods, shorter than 100 characters, without '!' (process-local "
            "channels are served by the process that created them)."
        )
