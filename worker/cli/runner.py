"""Build the worker from Django settings and options, then run it under signal handlers."""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import signal
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from worker.cli.exit_codes import EXIT_FORCED, EXIT_OK
from worker.config import channel_configs, worker_count_setting, worker_setting
from worker.constants import DEFAULT_EXPIRY_WARNING_S
from worker.consume.event_loop import DEFAULT_LOOP, loop_factory
from worker.errors import ConfigurationError
from worker.ops.health import DEFAULT_HEALTH_INTERVAL_S
from worker.ops.logs import logs_to_stderr

if TYPE_CHECKING:
    from worker.cli.options import WorkerOptions
    from worker.consume.worker import Worker

logger = logging.getLogger("worker")

# Set by --reload for the worker process it runs.
_RELOADED_ENV = "CHANNEL_WORKER_RELOADED"


def run(options: WorkerOptions) -> int:
    """Run the worker (or the supervisor, or the reloader) with Django already set up."""
    if os.environ.pop(_RELOADED_ENV, None):
        # A process group of its own, as under the supervisor: a terminal's Ctrl-C reaches
        # only the reloader, which stops this worker once (a second SIGINT would force it).
        os.setpgid(0, 0)
    if not options.channels:
        raise ConfigurationError(
            "No channels to consume: runworker CHANNEL [CHANNEL ...], e.g. "
            "runworker thumbnails-generate thumbnails-delete."
        )
    if logs_to_stderr():
        drop_djangos_console_handler()
    # Checked before anything starts, so a missing uvloop is one clear error, not one per child.
    new_loop = loop_factory(options.loop or DEFAULT_LOOP)
    if options.reload:
        return _run_reloading()
    if options.processes > 1:
        from worker.cli.supervisor import supervise_processes

        # Fail on configuration here, once, rather than in every child.
        build_worker(replace(options, metrics_port=None))
        return supervise_processes(options)
    worker = build_worker(options)
    if logs_to_stderr():
        # Again once the application has loaded: an asgi.py calling get_asgi_application()
        # sets Django's logging up again, console handler included.
        drop_djangos_console_handler()
    if options.metrics_port:
        from worker.ops.metrics import serve

        serve(options.metrics_port, options.metrics_host)
    with asyncio.Runner(loop_factory=new_loop) as runner:
        code: int = runner.run(_serve(worker))
    return code


def drop_djangos_console_handler() -> None:
    """Remove Django's development console handler from the ``django`` logger.

    While ``DEBUG`` is on, Django's default logging prints ``django.*`` lines at ``INFO`` (a
    task's state changes among them) on a console handler of its own, and the same lines reach
    the worker's handler on the root logger: each would show twice, once without the worker's
    format. Only handlers with Django's ``RequireDebugTrue`` filter go, and only while the
    ``django`` logger propagates to the root.
    """
    from django.utils.log import RequireDebugTrue

    django_logger = logging.getLogger("django")
    if not django_logger.propagate:
        # Its lines never reach the worker's handler.
        return
    for handler in list(django_logger.handlers):
        if any(isinstance(check, RequireDebugTrue) for check in handler.filters):
            django_logger.removeHandler(handler)


def build_worker(options: WorkerOptions) -> Worker:
    """A ``Worker`` from the settings and options; configuration errors surface here."""
    from django.conf import settings

    from worker.consume.worker import Worker
    from worker.ops.metrics import DEFAULT_MAX_TYPES_PER_CHANNEL, Metrics, NullMetrics
    from worker.project import check_served, load_application, load_layer
    from worker.tasks.channels import with_task_channels
    from worker.transport.dead_letters import DEFAULT_MAX_AGE_S, DEFAULT_MAX_COUNT, DeadLetterBounds

    channels = list(options.channels)
    worker_settings = getattr(settings, "CHANNEL_WORKER", None)
    configs = channel_configs(channels, options.channel_flags(), worker_settings)
    bounds = DeadLetterBounds(
        max_count=int(worker_setting(worker_settings, "DEAD_LETTER_MAX_COUNT", DEFAULT_MAX_COUNT)),
        max_age_s=worker_setting(worker_settings, "DEAD_LETTER_MAX_AGE_S", DEFAULT_MAX_AGE_S),
    )
    layer = load_layer(options.layer)
    application = load_application(options.application, channels)
    check_served(application, channels)
    # Task channels go to the built-in task consumer, which must know when a failure is final.
    application = with_task_channels(
        application,
        {channel: config.max_attempts for channel, config in configs.items()},
        {channel: config.task_thread_limit for channel, config in configs.items()},
    )
    metered = options.metrics_port or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    max_types = worker_count_setting(
        worker_settings, "METRICS_MAX_TYPES", DEFAULT_MAX_TYPES_PER_CHANNEL
    )
    metrics = Metrics(max_types_per_channel=max_types) if metered else NullMetrics()
    worker = Worker(
        application,
        channels,
        layer,
        configs=configs,
        shutdown_timeout_s=options.shutdown_timeout_s,
        dead_letter_bounds=bounds,
        expiry_warning_s=worker_setting(
            worker_settings, "EXPIRY_WARNING_S", DEFAULT_EXPIRY_WARNING_S
        ),
        metrics=metrics,
        health_interval_s=options.health_interval_s
        or worker_setting(worker_settings, "HEALTH_INTERVAL_S", DEFAULT_HEALTH_INTERVAL_S),
    )
    _add_schedules(worker, worker_settings, options.layer)
    return worker


def _add_schedules(worker: Worker, worker_settings: Any, layer_alias: str) -> None:
    """Run the loop of each schedule whose channel this worker serves; check them all first."""
    from worker.schedules.loop import DEFAULT_CLAIM_LEASE_S
    from worker.schedules.setup import project_schedules, schedule_loops

    schedules = project_schedules(worker_settings)
    lease_s = worker_setting(worker_settings, "SCHEDULE_LEASE_S", DEFAULT_CLAIM_LEASE_S)
    for loop in schedule_loops(
        schedules.values(), worker.channels, layer_alias, worker.layer, worker.worker_id,
        metrics=worker.metrics, lease_s=lease_s, hosts=worker.redis_hosts,
    ):  # fmt: skip
        worker.add_companion(loop)


async def _serve(worker: Worker) -> int:
    loop = asyncio.get_running_loop()
    signals_seen: list[str] = []

    def on_signal(number: signal.Signals) -> None:
        signals_seen.append(number.name)
        if len(signals_seen) == 1:
            logger.info(
                "Received %s: finishing in-flight messages (send it again to exit at once)",
                number.name,
            )
            worker.stop()
            return
        logger.warning("Received %s again: exiting at once", number.name)
        logging.shutdown()
        os._exit(EXIT_FORCED)

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)
    try:
        await worker.run()
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)
    return EXIT_OK


def _run_reloading() -> int:
    """Run this same command without ``--reload`` and restart it when Python files change."""
    from watchfiles import PythonFilter, run_process

    command = _this_command_without_reload()
    logger.info("Reloading on changes to Python files under %s", os.getcwd())
    os.environ[_RELOADED_ENV] = "1"
    # The worker is out of the terminal's process group, so a hangup must stop it from here.
    signal.signal(signal.SIGHUP, _interrupt)
    # The child sees SIGINT on each change: the worker drains and exits, then starts again.
    run_process(
        os.getcwd(),
        target=shlex.join(command),
        target_type="command",
        watch_filter=PythonFilter(),
        callback=lambda changes: logger.info(
            "Restarting the worker: %d file(s) changed", len(changes)
        ),
    )
    return EXIT_OK


def _interrupt(number: int, frame: object) -> None:
    raise KeyboardInterrupt


def _this_command_without_reload() -> list[str]:
    arguments = [argument for argument in sys.argv[1:] if argument != "--reload"]
    program = sys.argv[0]
    if program.endswith("__main__.py"):
        # `python -m worker`: running the file directly would shadow the package.
        return [sys.executable, "-m", "worker", *arguments]
    return [sys.executable, program, *arguments]
