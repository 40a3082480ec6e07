"""``--processes N``: run N worker processes, forward signals, restart any that die."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from worker.backoff import Backoff
from worker.cli.exit_codes import EXIT_CRASHED, EXIT_FORCED, EXIT_OK

if TYPE_CHECKING:
    from worker.cli.options import WorkerOptions

logger = logging.getLogger(__name__)

_FORWARDED = (signal.SIGTERM, signal.SIGINT)


def child_command(options: WorkerOptions) -> list[str]:
    """The ``python -m worker`` command line for one child, with the same options."""
    return [sys.executable, "-m", "worker", *options.child_arguments()]


def supervise_processes(options: WorkerOptions) -> int:
    """Keep ``options.processes`` children running until SIGTERM/SIGINT, then stop them."""
    count = options.processes
    command = child_command(options)
    if options.metrics_port:
        _serve_combined_metrics(options.metrics_port, options.metrics_host)
    # Children must import the project exactly as this process did.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    children: dict[int, subprocess.Popen[bytes]] = {}
    signals_seen: list[int] = []

    def forward(number: int, _frame: object) -> None:
        signals_seen.append(number)
        # The first signal asks children to drain; a second one makes them exit at once.
        for child in children.values():
            if child.poll() is None:
                child.send_signal(number)

    def start() -> subprocess.Popen[bytes]:
        # A process group of its own: a terminal's Ctrl-C, sent to the whole foreground group,
        # reaches only this process, which forwards it once (twice would force an exit).
        return subprocess.Popen(command, env=env, process_group=0)

    previous = {number: signal.signal(number, forward) for number in _FORWARDED}
    backoff = Backoff(min_s=0.5, max_s=10.0)
    # Children that died on their own were logged when they did; the exit code is about the stop.
    died_before_stop: set[int] = set()
    try:
        for slot in range(count):
            children[slot] = start()
        logger.info("Supervisor started %d worker processes: %s", count, _pids(children))
        while True:
            if signals_seen and all(child.poll() is not None for child in children.values()):
                break
            for slot, child in list(children.items()):
                code = child.poll()
                if code is None or signals_seen:
                    continue
                logger.error(
                    "Worker process %d exited with code %d; restarting it", child.pid, code
                )
                _forget_metrics_of(child.pid)
                died_before_stop.add(child.pid)
                time.sleep(backoff.next_delay_s())
                if signals_seen:
                    # Stopped during the backoff: a child started now would never be told.
                    continue
                children[slot] = start()
            time.sleep(0.2)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    logger.info(
        "Supervisor stopped; worker exit codes %s",
        [child.returncode for child in children.values()],
    )
    if len(signals_seen) > 1:
        return EXIT_FORCED
    stopped = [child.returncode for child in children.values() if child.pid not in died_before_stop]
    # A child killed by a signal (negative code) while stopping did not stop cleanly either.
    return max((code if code >= 0 else EXIT_CRASHED for code in stopped), default=EXIT_OK)


def _pids(children: dict[int, subprocess.Popen[bytes]]) -> str:
    return ", ".join(str(child.pid) for child in children.values())


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
