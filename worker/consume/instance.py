"""Application instances that handle one channel's messages, one message at a time each."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from worker.backoff import Backoff
from worker.consume.pauses import last_continued_s
from worker.errors import ApplicationSendError, HandlerTimeout, redis_fault
from worker.ops.logs import message_fields

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from routing.types import ASGIApp, Message, Scope
    from worker.config import ChannelConfig
    from worker.consume.delivery import Delivery
    from worker.consume.outage import RedisHosts
    from worker.consume.prefetch import Prefetch
    from worker.consume.settle import Settlement
    from worker.ops.stats import Stats

logger = logging.getLogger(__name__)


class InstanceSlot:
    """Runs one application instance for ``channel`` and replaces it whenever it ends.

    The instance asks ``receive()`` for its next message once it is done with the previous one,
    which is how a Channels consumer's "handler finished" is observed. A handler that raises
    ends its instance: the failure is logged, counted and settled (retry or dead letter), and a
    fresh instance takes over, so no other message is affected. An instance that ends before
    taking a message because the application's own channel layer could not reach Redis (a
    Channels consumer receives on its layer too) is started again once Redis answers, quietly:
    the outage is logged once by the worker, not once per instance.
    """

    def __init__(
        self,
        application: ASGIApp,
        channel: str,
        config: ChannelConfig,
        prefetch: Prefetch,
        settlement: Settlement,
        stats: Stats,
        hosts: RedisHosts | None = None,
    ) -> None:
        self.application = application
        self.channel = channel
        self.config = config
        self.prefetch = prefetch
        self.settlement = settlement
        self.stats = stats
        self.hosts = hosts or settlement.hosts
        self.current: Delivery | None = None
        #: Messages this slot finished or failed, to tell a broken application from a busy one.
        self.handled = 0
        self.started_at = 0.0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._timer: asyncio.TimerHandle | None = None
        self._app_task: asyncio.Task[None] | None = None
        self._timed_out: Delivery | None = None
        self._debug = logger.isEnabledFor(logging.DEBUG)

    @property
    def busy(self) -> bool:
        return self.current is not None

    async def idle(self) -> None:
        """Wait until no message is being handled."""
        await self._idle.wait()

    def drain(self) -> None:
        """Finish the current message but start no other."""
        self.draining = True

    async def run(self) -> None:
        backoff = Backoff()
        while not self.draining:
            handled_before = self.handled
            error = await self._run_instance()
            if error is not None:
                await self._fail(error)
            else:
                self._finish()
            if self.handled == handled_before and error is not None and redis_fault(error):
                await self.hosts.wait_answering()
            if self.handled == handled_before:
                # The instance ended without handling anything; don't spin on a broken app.
                await backoff.wait()
            else:
                backoff.reset()

    async def _run_instance(self) -> BaseException | None:
        """Run one application instance to its end; return what it raised, if anything."""
        scope = {"type": "channel", "channel": self.channel}
        self._app_task = asyncio.create_task(self._call(scope))
        try:
            await self._app_task
        except asyncio.CancelledError:
            timed_out = self._timed_out
            self._timed_out = None
            task = asyncio.current_task()
            if timed_out is None or (task is not None and task.cancelling()):
                raise
            return HandlerTimeout(
                f"handler ran longer than message_timeout_s={self.config.message_timeout_s:g} "
                "and was cancelled"
            )
        except Exception as error:
            return error
        return None

    async def _call(self, scope: Scope) -> None:
        await self.application(scope, self._receive, self._send)

    def _receive(self) -> Awaitable[Message]:
        # The handler is done once receive() is called, before the call is awaited: Channels'
        # consumer loop calls it, wraps it in a task, then may cancel that task unstarted when
        # the consumer's own channel-layer receive failed meanwhile (a Redis blip), and the
        # instance dies. The finished message must not be charged with that failure and retried.
        self._finish()
        return self._next_message()

    async def _next_message(self) -> Message:
        if self.draining:
            # During shutdown nothing new starts; the slot is cancelled once all are idle.
            await asyncio.get_running_loop().create_future()
        delivery = await self.prefetch.get()
        self.current = delivery
        self._idle.clear()
        self.started_at = time.monotonic()
        delivery.started_at_epoch = time.time()
        if self.config.message_timeout_s is not None:
            self._timer = asyncio.get_running_loop().call_later(
                self.config.message_timeout_s, self._on_timeout, delivery
            )
        return delivery.message

    async def _send(self, message: Message) -> None:
        raise ApplicationSendError(
            f"A worker application for channel {self.channel!r} called send({message!r}), but "
            "a channel scope has no client; use self.channel_layer.send() or group_send()."
        )

    def _on_timeout(self, delivery: Delivery) -> None:
        if self.current is not delivery or self._app_task is None:
            return
        remaining_s = self._time_left_after_a_stop_s()
        if remaining_s > 0:
            self._timer = asyncio.get_running_loop().call_later(
                remaining_s, self._on_timeout, delivery
            )
            return
        # A sync handler's thread cannot be stopped; cancelling abandons it.
        self._timed_out = delivery
        self._app_task.cancel()

    def _time_left_after_a_stop_s(self) -> float:
        """The handler's time left when the process was stopped while it ran, else 0.

        Stopped (SIGSTOP, then SIGCONT), the process ran nothing, so the handler's time starts
        again from the SIGCONT: a stop is not a timeout, nor a failed attempt.
        """
        continued_s = last_continued_s()
        if self.config.message_timeout_s is None or continued_s <= self.started_at:
            return 0.0
        return continued_s + self.config.message_timeout_s - time.monotonic()

    def _take_current(self) -> Delivery | None:
        delivery, self.current = self.current, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._idle.set()
        return delivery

    def _finish(self) -> None:
        delivery = self._take_current()
        if delivery is None:
            return
        self.handled += 1
        duration_s = time.monotonic() - self.started_at
        self.settlement.completed(delivery, duration_s)
        if self._debug:
            logger.debug(
                "Handled %r on channel %r, attempt %d, in %.1f ms",
                delivery.label,
                self.channel,
                delivery.attempt,
                duration_s * 1000,
                extra=message_fields(self.channel, delivery.label, delivery.attempt, duration_s),
            )

    async def _fail(self, error: BaseException) -> None:
        delivery = self._take_current()
        if delivery is None and redis_fault(error) is not None:
            logger.debug(
                "Application for channel %r ended with a Redis error (%s); restarting it once "
                "Redis answers",
                self.channel,
                error,
            )
            return
        if delivery is None:
            logger.error(
                "Application for channel %r failed before taking a message; restarting it",
                self.channel,
                exc_info=error,
            )
            return
        self.handled += 1
        duration_s = time.monotonic() - self.started_at
        reason = f"{type(error).__name__}: {error}"
        logger.error(
            "Handler for %r on channel %r failed, attempt %d, after %.1f ms: %s",
            delivery.label,
            self.channel,
            delivery.attempt,
            duration_s * 1000,
            reason,
            exc_info=error,
            extra=message_fields(self.channel, delivery.label, delivery.attempt, duration_s),
        )
        await self.settlement.failed(delivery, error, reason, duration_s)

    def cancelled(self) -> Delivery | None:
        """Forget the message being handled when the slot is cancelled, returning it."""
        return self._take_current()
