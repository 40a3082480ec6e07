"""``--processes N``: run N worker processes, forward signals, restart any that die."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.backoff import Backoff
from worker.cli.exit_codes import EXIT_CRASHED, EXIT_FORCED, EXIT_OK

if TYPE_CHECKING:
    from worker.cli.options import WorkerOptions

logger = logging.getLogger(__name__)

_FORWARDED = (signal.SIGTERM, signal.SIGINT)
RESTART_MIN_S = 0.5
RESTART_MAX_S = 10.0
# A child that exits after running this long ran fine: its restart backoff starts afresh.
STABLE_RUN_S = 5.0
POLL_INTERVAL_S = 0.2


def child_command(options: WorkerOptions) -> list[str]:
    """The ``python -m worker`` command line for one child, with the same options."""
    return [sys.executable, "-m", "worker", *options.child_arguments()]


def supervise_processes(options: WorkerOptions) -> int:
    """Keep ``options.processes`` children running until SIGTERM/SIGINT, then stop them."""
    if options.metrics_port:
        _serve_combined_metrics(options.metrics_port, options.metrics_host)
    # Children must import the project exactly as this process did.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    supervisor = _Supervisor(child_command(options), env, options.processes)
    previous = {number: signal.signal(number, supervisor.on_signal) for number in _FORWARDED}
    try:
        supervisor.run()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return supervisor.exit_code()


@dataclass(slots=True)
class _Slot:
    """One of the N places for a child: the child in it now, and its restart backoff."""

    process: subprocess.Popen[bytes]
    started_at_s: float
    backoff: Backoff = field(default_factory=lambda: Backoff(RESTART_MIN_S, RESTART_MAX_S))
    # Signals forwarded to this child so far.
    told: int = 0
    # When the child that died is to be replaced; None while one runs.
    restart_at_s: float | None = None


class _Supervisor:
    def __init__(self, command: list[str], env: dict[str, str], count: int) -> None:
        self.command = command
        self.env = env
        self.count = count
        self.slots: list[_Slot] = []
        self.signals_seen: list[int] = []
        # Children that died on their own were logged when they did; the exit code is about
        # the stop.
        self.died_before_stop: set[int] = set()

    def on_signal(self, number: int, _frame: object) -> None:
        # Only noted here; the loop forwards it, so a child started at this very moment is
        # told too, and none is told twice.
        self.signals_seen.append(number)

    def run(self) -> None:
        self.slots = [_Slot(self._start(), time.monotonic()) for _ in range(self.count)]
        logger.info(
            "Supervisor started %d worker processes: %s",
            self.count,
            ", ".join(str(slot.process.pid) for slot in self.slots),
        )
        while not (self.signals_seen and self._all_exited()):
            for slot in self.slots:
                if self.signals_seen:
                    self._forward(slot)
                else:
                    self._tend(slot)
            time.sleep(POLL_INTERVAL_S)
        logger.info(
            "Supervisor stopped; worker exit codes %s",
            [slot.process.returncode for slot in self.slots],
        )

    def exit_code(self) -> int:
        if len(self.signals_seen) > 1:
            return EXIT_FORCED
        stopped = [
            _stop_code(slot.process.returncode, self.signals_seen)
            for slot in self.slots
            if slot.process.pid not in self.died_before_stop
        ]
        return max(stopped, default=EXIT_OK)

    def _start(self) -> subprocess.Popen[bytes]:
        # A process group of its own: a terminal's Ctrl-C, sent to the whole foreground group,
        # reaches only this process, which forwards it once (twice would force an exit).
        return subprocess.Popen(self.command, env=self.env, process_group=0)

    def _all_exited(self) -> bool:
        return all(
            slot.restart_at_s is not None or slot.process.poll() is not None for slot in self.slots
        )

    def _forward(self, slot: _Slot) -> None:
        """Send the child the stop signals it has not had yet; a pending restart is dropped."""
        if slot.restart_at_s is not None or slot.process.poll() is not None:
            return
        while slot.told < len(self.signals_seen):
            slot.process.send_signal(self.signals_seen[slot.told])
            slot.told += 1

    def _tend(self, slot: _Slot) -> None:
        """Notice a child that died and replace it once its backoff has passed."""
        now_s = time.monotonic()
        if slot.restart_at_s is not None:
            if now_s >= slot.restart_at_s:
                slot.process, slot.started_at_s, slot.restart_at_s = self._start(), now_s, None
            return
        code = slot.process.poll()
        if code is None:
            return
        if now_s - slot.started_at_s >= STABLE_RUN_S:
            # It ran fine for a while: this is a new failure, not part of a crash loop.
            slot.backoff.reset()
        delay_s = slot.backoff.next_delay_s()
        logger.error(
            "Worker process %d exited with code %d; restarting it in %.1f s (restart %d in a row)",
            slot.process.pid,
            code,
            delay_s,
            slot.backoff.failures,
        )
        _forget_metrics_of(slot.process.pid)
        self.died_before_stop.add(slot.process.pid)
        slot.restart_at_s = now_s + delay_s


def _stop_code(returncode: int, signals_seen: list[int]) -> int:
    """What a child's exit says about the stop: its own code, or EXIT_CRASHED if killed."""
    if returncode >= 0:
        return returncode
    # Ended by the stop signal itself, the child had not yet set up its handlers: it was still
    # starting and had taken nothing, so it stopped cleanly. Any other signal was no clean stop.
    if signals_seen and returncode == -signals_seen[0]:
        return EXIT_OK
    return EXIT_CRASHED


def _serve_combined_metrics(port: int, host: str) -> None:
    """Serve one endpoint summing every child's metrics (prometheus-client multiprocess mode)."""
    import tempfile

    from worker.ops.metrics import serve

    # Must be set before prometheus-client is first imported here and in the children.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="channel-worker-metrics-")
    serve(port, host)


def _forget_metrics_of(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
