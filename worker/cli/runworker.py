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

        # Where setup_django() would find the settings module: two projects may share its name.
        search_path = [os.getcwd(), *options.pythonpath, *sys.path]
        healthy, line = check(
            list(options.channels), settings_module=options.settings, search_path=search_path
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


if __name__ == "__main__":
    sys.exit(main())
