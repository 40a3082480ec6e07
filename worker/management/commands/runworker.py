"""``python manage.py runworker CHANNEL [CHANNEL ...]``: the same worker as the console script."""

from __future__ import annotations

import logging
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from worker.cli import add_worker_arguments, configure_logging, run
from worker.errors import ConfigurationError


class Command(BaseCommand):
    help = "Consume named channels from a channels-redis layer and run their consumers."
    # The worker's own checks run at start-up; the whole project's need not delay it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_worker_arguments(parser, standalone=False)
        parser.add_argument(
            "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not logging.getLogger().handlers:
            configure_logging(options["log_level"])
        try:
            code = run(options)
        except ConfigurationError as error:
            raise CommandError(str(error), returncode=2) from error
        if code:
            raise SystemExit(code)
