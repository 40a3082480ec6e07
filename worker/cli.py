"""``runworker`` command line: parse options, build the worker, run it under signal handlers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from worker.config import DELIVERY_MODES, channel_configs, worker_setting
from worker.constants import (
    DEFAULT_CONCURRENCY,
    DEFAULT_EXPIRY_WARNING_S,
    DEFAULT_LEASE_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MESSAGE_TIMEOUT_S,
    DEFAULT_SHUTDOWN_TIMEOUT_S,
)
from worker.errors import ConfigurationError

logger = logging.getLogger("worker")

# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_CRASHED = 1
EXIT_CONFIG = 2
EXIT_FORCED = 3

# Flags that set worker-wide defaults for ChannelConfig fields of the same name.
CHANNEL_FLAGS = (
    "concurrency",
    "prefetch",
    "delivery",
    "max_attempts",
    "message_timeout_s",
    "max_message_bytes",
    "lease_s",
)

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


def add_worker_arguments(parser: argparse.ArgumentParser, *, standalone: bool) -> None:
    """The options shared by ``runworker`` and ``python manage.py runworker``."""
    parser.add_argument("channels", nargs="+", metavar="CHANNEL", help="channel names to consume")
    parser.add_argument(
        "--layer", default="default", help="CHANNEL_LAYERS alias (default: default)"
    )
    parser.add_argument(
        "--application", help="dotted path of the root ASGI application (default: ASGI_APPLICATION)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        help=f"application instances per channel (default {DEFAULT_CONCURRENCY}; 1 keeps order)",
    )
    parser.add_argument(
        "--prefetch",
        type=int,
        help="messages taken from Redis but not yet started, per channel (default: concurrency)",
    )
    parser.add_argument(
        "--delivery",
        choices=DELIVERY_MODES,
        help="at-least-once (default): redelivered if the worker dies mid-handler; "
        "at-most-once: never twice, lost on a crash",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        help=f"attempts before a failing message is dead-lettered (default {DEFAULT_MAX_ATTEMPTS})",
    )
    parser.add_argument(
        "--message-timeout-s",
        type=float,
        help="cancel an async handler after this long and count a failed attempt "
        f"(default {DEFAULT_MESSAGE_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        help=f"dead-letter larger messages unhandled (default {DEFAULT_MAX_MESSAGE_BYTES})",
    )
    parser.add_argument(
        "--lease-s",
        type=float,
        help="at-least-once lease: a dead worker's messages are redelivered after this long "
        f"(default {DEFAULT_LEASE_S:g})",
    )
    parser.add_argument(
        "--shutdown-timeout-s",
        type=float,
        default=DEFAULT_SHUTDOWN_TIMEOUT_S,
        help="how long in-flight handlers may finish after SIGTERM (default %(default)s)",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes under one supervisor (default 1)"
    )
    if standalone:
        parser.add_argument(
            "--settings", help="Django settings module (default: DJANGO_SETTINGS_MODULE)"
        )
        parser.add_argument(
            "--pythonpath", action="append", default=[], help="directory to add to sys.path"
        )
        parser.add_argument(
            "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runworker",
        description="Consume named channels from a channels-redis layer and run their consumers.",
        epilog="Exit codes: 0 stopped cleanly, 1 crashed, 2 configuration error, "
        "3 forced exit on a second signal.",
    )
    add_worker_arguments(parser, standalone=True)
    return parser


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    configure_logging(options.log_level)
    try:
        from worker._django import setup_django

        setup_django(options.settings, options.pythonpath)
        return run(vars(options))
    except ConfigurationError as error:
        logger.error("%s", error)
        return EXIT_CONFIG


def run(options: dict[str, Any]) -> int:
    """Run the worker (or the supervisor) with Django already set up."""
    from django.conf import settings

    from worker._django import check_served, load_application, load_layer
    from worker.dead_letters import DEFAULT_MAX_AGE_S, DEFAULT_MAX_COUNT, DeadLetterBounds
    from worker.worker import Worker

    channels: list[str] = options["channels"]
    worker_settings = getattr(settings, "CHANNEL_WORKER", None)
    configs = channel_configs(
        channels, {key: options.get(key) for key in CHANNEL_FLAGS}, worker_settings
    )
    bounds = DeadLetterBounds(
        max_count=int(worker_setting(worker_settings, "DEAD_LETTER_MAX_COUNT", DEFAULT_MAX_COUNT)),
        max_age_s=worker_setting(worker_settings, "DEAD_LETTER_MAX_AGE_S", DEFAULT_MAX_AGE_S),
    )
    layer = load_layer(options["layer"])
    application = load_application(options.get("application"))
    check_served(application, channels)
    if options.get("processes", 1) > 1:
        from worker.supervisor import supervise_processes

        return supervise_processes(options)
    worker = Worker(
        application,
        channels,
        layer,
        configs=configs,
        shutdown_timeout_s=options["shutdown_timeout_s"],
        dead_letter_bounds=bounds,
        expiry_warning_s=worker_setting(
            worker_settings, "EXPIRY_WARNING_S", DEFAULT_EXPIRY_WARNING_S
        ),
    )
    code: int = asyncio.run(_serve(worker))
    return code


async def _serve(worker: Any) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
