"""``runworker`` command line: parse options, set up Django, hand over to the runner."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from worker.errors import ConfigurationError
from worker.logs import configure_logging
from worker.options import add_worker_arguments
from worker.runner import EXIT_CONFIG, run

logger = logging.getLogger("worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runworker",
        description="Consume named channels from a channels-redis layer and run their consumers.",
        epilog="Exit codes: 0 stopped cleanly (or --check healthy), 1 crashed (or --check "
        "unhealthy), 2 configuration error, 3 forced exit on a second signal.",
    )
    add_worker_arguments(parser, standalone=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    if options.check:
        # The probe reads this host's health records only: no settings, no Redis.
        from worker.health import check

        healthy, line = check(options.channels)
        print(line)
        return 0 if healthy else 1
    configure_logging(options.log_level, options.log_format)
    try:
        from worker._django import setup_django

        setup_django(options.settings, options.pythonpath)
        return run(vars(options))
    except ConfigurationError as error:
        logger.error("%s", error)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
