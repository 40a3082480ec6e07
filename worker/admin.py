"""``channel-worker`` administration command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("usage: channel-worker status | dead list|show|requeue|purge CHANNEL", file=sys.stderr)
    return 2
