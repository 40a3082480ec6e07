"""``python manage.py runworker CHANNEL [CHANNEL ...]``: the same worker as the console script."""

from __future__ import annotations

import logging
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from worker.errors import ConfigurationError
from worker.logs import configure_logging
from worker.options import add_worker_arguments
from worker.runner import run


class Command(BaseCommand):
    help = "Consume named channels from a channels-redis layer and run their consumers."
    # The worker checks what it needs at start-up; the whole project's checks need not delay it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_worker_arguments(parser, standalone=False)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["check"]:
            from worker.health import check

            healthy, line = check(options["channels"])
            self.stdout.write(line)
            if not healthy:
                raise SystemExit(1)
            return
        if not logging.getLogger().handlers:
            configure_logging(options["log_level"], options["log_format"])
        try:
            code = run(options)
        except ConfigurationError as error:
            raise CommandError(str(error), returncode=2) from error
        if code:
            raise SystemExit(code)
