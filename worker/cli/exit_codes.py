"""Exit codes of ``runworker`` and ``channel-worker``, in one place for both and their help."""

from __future__ import annotations

EXIT_OK = 0
#: ``runworker``: the worker crashed, or ``--check`` found it unhealthy.
EXIT_CRASHED = 1
#: ``channel-worker``: the dead letter asked for does not exist.
EXIT_NOT_FOUND = 1
EXIT_CONFIG = 2
#: A second SIGTERM/SIGINT made the worker exit without draining.
EXIT_FORCED = 3

EXIT_CODES_HELP = (
    f"Exit codes: {EXIT_OK} stopped cleanly (or --check healthy), {EXIT_CRASHED} crashed (or "
    f"--check unhealthy), {EXIT_CONFIG} configuration error, {EXIT_FORCED} forced exit on a "
    "second signal."
)
