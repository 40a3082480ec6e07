"""``runworker`` command line: parse options, set up Django, hand over to the runner."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from worker.cli.exit_codes import EXIT_CODES_HELP, EXIT_CONFIG, EXIT_CRASHED, EXIT_OK
from worker.cli.options import WorkerOptions, add_worker_arguments
from worker.cli.runner import run
from worker.errors import ConfigurationError
from worker.ops.logs import configure_logging

logger = logging.getLogger("worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runworker",
        description="Consume named channels from a channels-redis layer and run their consumers.",
        epilog=EXIT_CODES_HELP,
    )
    add_worker_arguments(parser, standalone=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = WorkerOptions.from_parsed(vars(build_parser().parse_args(argv)))
    if options.check:
        # The probe reads this host's health records only: no settings loaded, no Redis.
        from worker.ops.health import check

        healthy, line = check(
            list(options.channels),
            settings_module=options.settings,
            settings_file=_settings_file(options),
        )
        print(line)
        return EXIT_OK if healthy else EXIT_CRASHED
    configure_logging(options.log_level, options.log_format)
    try:
        from worker.project import setup_django

        setup_django(options.settings, list(options.pythonpath))
        return run(options)
    except ConfigurationError as error:
        logger.error("%s", error)
        return EXIT_CONFIG


def _settings_file(options: WorkerOptions) -> str | None:
    """Where the worker would import the settings module from: projects may share its name."""
    from worker.ops.health_files import SETTINGS_ENV, find_settings_file
    from worker.project import import_path

    module = options.settings or os.environ.get(SETTINGS_ENV)
    return find_settings_file(module, import_path(options.pythonpath))


if __name__ == "__main__":
    sys.exit(main())
