"""Command-line options shared by ``runworker`` and ``python manage.py runworker``.

The parser fills one typed ``WorkerOptions``, built once; the runner, the reloader and the
supervisor all read that, and the supervisor's children get every option it holds
(``WorkerOptions.child_arguments``), so a new flag cannot be lost on the way to them.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import worker
from worker.config import DELIVERY_MODES
from worker.constants import (
    DEFAULT_CONCURRENCY,
    DEFAULT_LEASE_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MESSAGE_TIMEOUT_S,
    DEFAULT_SHUTDOWN_TIMEOUT_S,
)
from worker.consume.event_loop import DEFAULT_LOOP, LOOPS
from worker.ops.health import DEFAULT_HEALTH_INTERVAL_S

# Flags that set worker-wide defaults for ChannelConfig fields of the same name.
CHANNEL_FLAGS = (
    "concurrency",
    "prefetch",
    "delivery",
    "max_attempts",
    "message_timeout_s",
    "max_message_bytes",
    "lease_s",
    "task_threads",
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_METRICS_HOST = "127.0.0.1"
# Options about this process only: the supervisor does not pass them to its children.
_THIS_PROCESS_ONLY = frozenset(
    {
        "channels",
        "processes",
        "reload",
        "check",
        "metrics_port",
        "metrics_host",
        "settings",
        "pythonpath",
    }
)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Every ``runworker`` option, typed; ``None`` leaves a setting to ``CHANNEL_WORKER``."""

    channels: tuple[str, ...] = ()
    # Per-channel defaults (CHANNEL_FLAGS).
    concurrency: int | None = None
    prefetch: int | None = None
    delivery: str | None = None
    max_attempts: int | None = None
    message_timeout_s: float | None = None
    max_message_bytes: int | None = None
    lease_s: float | None = None
    task_threads: int | None = None
    # The process.
    layer: str = "default"
    application: str | None = None
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    processes: int = 1
    reload: bool = False
    loop: str = DEFAULT_LOOP
    # Operations.
    check: bool = False
    health_interval_s: float | None = None
    metrics_port: int | None = None
    metrics_host: str = DEFAULT_METRICS_HOST
    log_format: str = "text"
    log_level: str = "INFO"
    # Django bootstrap (the console script only).
    settings: str | None = None
    pythonpath: tuple[str, ...] = ()

    @classmethod
    def from_parsed(cls, values: Mapping[str, Any]) -> WorkerOptions:
        """From ``vars(parser.parse_args())`` or Django's ``handle(**options)``.

        Keys that are not options of ours (Django's ``verbosity``, ...) are left out.
        """
        known = {field.name for field in fields(cls)}
        given = {key: value for key, value in values.items() if key in known}
        for key in ("channels", "pythonpath"):
            if key in given:
                given[key] = tuple(given[key] or ())
        return cls(**given)

    def channel_flags(self) -> dict[str, Any]:
        """The per-channel defaults given on the command line."""
        return {key: getattr(self, key) for key in CHANNEL_FLAGS}

    def child_arguments(self) -> list[str]:
        """Command-line arguments that give a supervisor's child these same options."""
        arguments: list[str] = []
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in _THIS_PROCESS_ONLY or value is None or value is False:
                continue
            flag = "--" + field.name.replace("_", "-")
            arguments += [flag] if value is True else [flag, str(value)]
        return [*arguments, "--", *self.channels]


def add_worker_arguments(parser: argparse.ArgumentParser, *, standalone: bool) -> None:
    """Add every worker option to ``parser``; ``standalone`` adds the Django bootstrap ones."""
    parser.add_argument("channels", nargs="*", metavar="CHANNEL", help="channel names to consume")
    _add_channel_options(parser)
    _add_process_options(parser)
    _add_operations_options(parser)
    if standalone:
        parser.add_argument("--version", action="version", version=f"%(prog)s {worker.__version__}")
        parser.add_argument("--settings", help="Django settings module (DJANGO_SETTINGS_MODULE)")
        parser.add_argument(
            "--pythonpath", action="append", default=[], help="directory to add to sys.path"
        )
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)


def _add_channel_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("per-channel defaults (CHANNEL_WORKER overrides per channel)")
    group.add_argument(
        "--concurrency",
        type=int,
        help=f"application instances per channel (default {DEFAULT_CONCURRENCY}; 1 keeps order)",
    )
    group.add_argument(
        "--prefetch",
        type=int,
        help="messages taken from Redis but not yet started, per channel (default: concurrency)",
    )
    group.add_argument(
        "--delivery",
        choices=DELIVERY_MODES,
        help="at-least-once (default): redelivered if the worker dies mid-handler; "
        "at-most-once: never twice, lost on a crash",
    )
    group.add_argument(
        "--max-attempts",
        type=int,
        help=f"attempts before a failing message is dead-lettered (default {DEFAULT_MAX_ATTEMPTS})",
    )
    group.add_argument(
        "--message-timeout-s",
        type=float,
        help="cancel an async handler after this long and count a failed attempt "
        f"(default {DEFAULT_MESSAGE_TIMEOUT_S:g})",
    )
    group.add_argument(
        "--max-message-bytes",
        type=int,
        help=f"dead-letter larger messages unhandled (default {DEFAULT_MAX_MESSAGE_BYTES})",
    )
    group.add_argument(
        "--lease-s",
        type=float,
        help="at-least-once: a dead worker's messages are redelivered after this long "
        f"(default {DEFAULT_LEASE_S:g})",
    )
    group.add_argument(
        "--task-threads",
        type=int,
        help="task channels: sync task functions that run at once, each in a thread of a pool "
        "of this size (default: concurrency)",
    )


def _add_process_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layer", default="default", help="CHANNEL_LAYERS alias")
    parser.add_argument(
        "--application", help="dotted path of the root ASGI application (default: ASGI_APPLICATION)"
    )
    parser.add_argument(
        "--shutdown-timeout-s",
        type=float,
        default=DEFAULT_SHUTDOWN_TIMEOUT_S,
        help="how long in-flight handlers may finish after SIGTERM (default %(default)s)",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes under one supervisor"
    )
    parser.add_argument(
        "--reload", action="store_true", help="restart when project code changes (development)"
    )
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default=DEFAULT_LOOP,
        help="event loop: auto (default) is uvloop when installed, else asyncio",
    )


def _add_operations_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check",
        action="store_true",
        help="health probe: exit 0 if this host's workers serve CHANNELs and are alive, else 1",
    )
    parser.add_argument(
        "--health-interval-s",
        type=float,
        help="how often the health record is refreshed "
        f"(default: CHANNEL_WORKER['HEALTH_INTERVAL_S'] or {DEFAULT_HEALTH_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics on this port (default: off)"
    )
    parser.add_argument(
        "--metrics-host",
        default=DEFAULT_METRICS_HOST,
        help="address for --metrics-port (default %(default)s)",
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log line format"
    )
