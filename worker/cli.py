"""``runworker`` command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("usage: runworker CHANNEL [CHANNEL ...]", file=sys.stderr)
    return 2
