"""Application instances that handle one channel's messages, one message at a time each."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from worker._backoff import Backoff
from worker.errors import ApplicationSendError

if TYPE_CHECKING:
    from routing.types import ASGIApp, Message
    from worker.delivery import Delivery
    from worker.prefetch import Prefetch
    from worker.stats import Stats

logger = logging.getLogger(__name__)


class InstanceSlot:
    """Runs one application instance for ``channel`` and replaces it whenever it ends.

    The instance asks ``receive()`` for its next message once it is done with the previous one,
    which is how a Channels consumer's "handler finished" is observed. A handler that raises
    ends its instance: the failure is logged and counted, and a fresh instance takes over, so no
    other message is affected.
    """

    def __init__(
        self,
        application: ASGIApp,
        channel: str,
        prefetch: Prefetch,
        stats: Stats,
    ) -> None:
        self.application = application
        self.channel = channel
        self.prefetch = prefetch
        self.stats = stats
        self.current: Delivery | None = None
        self.started_at = 0.0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
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
            handled_before = self.stats.completed + self.stats.failed
            scope = {"type": "channel", "channel": self.channel}
            try:
                await self.application(scope, self._receive, self._send)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._fail(error)
            else:
                self._finish()
            if self.stats.completed + self.stats.failed == handled_before:
                # The instance ended without handling anything; don't spin on a broken app.
                await backoff.wait()
            else:
                backoff.reset()

    async def _receive(self) -> Message:
        self._finish()
        if self.draining:
            # During shutdown nothing new starts; the slot is cancelled once all are idle.
            await asyncio.get_running_loop().create_future()
        delivery = await self.prefetch.get()
        self.current = delivery
        self._idle.clear()
        self.started_at = time.monotonic()
        return delivery.message

    async def _send(self, message: Message) -> None:
        raise ApplicationSendError(
            f"A worker application for channel {self.channel!r} called send({message!r}), but "
            "a channel scope has no client; use self.channel_layer.send() or group_send()."
        )

    def _finish(self) -> None:
        delivery = self.current
        if delivery is None:
            return
        self.current = None
        self._idle.set()
        self.stats.completed += 1
        if self._debug:
            logger.debug(
                "Handled %r on channel %r in %.1f ms",
                delivery.type,
                self.channel,
                (time.monotonic() - self.started_at) * 1000,
            )

    def _fail(self, error: Exception) -> None:
        delivery = self.current
        self.current = None
        self._idle.set()
        if delivery is None:
            logger.error(
                "Application for channel %r failed before taking a message; restarting it",
                self.channel,
                exc_info=error,
            )
            return
        self.stats.failed += 1
        logger.error(
            "Handler for %r on channel %r failed after %.1f ms: %s: %s",
            delivery.type,
            self.channel,
            (time.monotonic() - self.started_at) * 1000,
            type(error).__name__,
            error,
            exc_info=error,
        )

    def cancelled(self) -> Delivery | None:
        """Forget the message being handled when the slot is cancelled, returning it."""
        delivery, self.current = self.current, None
        self._idle.set()
        return delivery
