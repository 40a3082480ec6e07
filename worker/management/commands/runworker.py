"""``python manage.py runworker CHANNEL [CHANNEL ...]``: the same worker as the console script."""

from __future__ import annotations

import logging
import os
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from worker.cli.exit_codes import EXIT_CONFIG, EXIT_CRASHED
from worker.cli.options import WorkerOptions, add_worker_arguments
from worker.cli.runner import run
from worker.errors import ConfigurationError
from worker.ops.logs import configure_logging


class Command(BaseCommand):
    help = "Consume named channels from a channels-redis layer and run their consumers."
    # The worker checks what it needs at start-up; the whole project's checks need not delay it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_worker_arguments(parser, standalone=False)

    def handle(self, *args: Any, **parsed: Any) -> None:
        options = WorkerOptions.from_parsed(parsed)
        if options.check:
            from worker.ops.health import check
            from worker.ops.health_files import SETTINGS_ENV, loaded_settings_file

            # manage.py has imported the settings: their file says which project this is.
            own_file = loaded_settings_file(os.environ.get(SETTINGS_ENV))
            healthy, line = check(list(options.channels), settings_file=own_file)
            self.stdout.write(line)
            if not healthy:
                raise SystemExit(EXIT_CRASHED)
            return
        if not logging.getLogger().handlers:
            configure_logging(options.log_level, options.log_format)
        try:
            code = run(options)
        except ConfigurationError as error:
            raise CommandError(str(error), returncode=EXIT_CONFIG) from error
        if code:
            raise SystemExit(code)
