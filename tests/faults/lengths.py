"""How long the fault tests hold each fault, and how much work runs through it.

By default each fault is shortened so the suite stays quick, while still outlasting the lease
the tests give their workers, which is what turns a lost acknowledgement into a redelivery. Set
``CHANNEL_WORKER_FULL_FAULTS=1`` to hold each fault as long as it lasts in production (the
delivery page's second table): connections reset every 0.5 s for 30 s under 6,000 messages;
``MISCONF`` 6 s, ``READONLY`` 4 s, ``BUSY`` 2 s; ``MISCONF`` 20 s under failing handlers; one
of two workers blackholed or stopped for 40 s against the default 30 s lease.
"""

from __future__ import annotations

import os

FULL = os.environ.get("CHANNEL_WORKER_FULL_FAULTS") == "1"

# Redis refusing writes: (fault, seconds held), each with 300 messages in flight.
REFUSALS = (
    [("misconf", 6.0), ("readonly", 4.0), ("busy", 2.0)]
    if FULL
    else [("misconf", 3.0), ("readonly", 2.5), ("busy", 2.5)]
)
REFUSALS_LEASE_S = 2.0
# MISCONF while every handler fails writing to Redis: 4 s already left every slot dead before
# failures of Redis were waited out.
MISCONF_UNDER_FAILURES_S = 20.0 if FULL else 4.0

# Connections reset by a proxy every RESET_EVERY_S for RESETS_FOR_S, while UNDER_RESETS
# messages of RESET_HANDLER_S each run on two workers, then CLEAN_AFTER more.
RESET_EVERY_S = 0.5
RESETS_FOR_S = 30.0 if FULL else 6.0
UNDER_RESETS = 3000 if FULL else 1500
CLEAN_AFTER = 3000 if FULL else 500
# Two workers of 10 slots each stay busy for about as long as the resets last.
RESET_HANDLER_S = 0.2 if FULL else 0.08

# One of two workers cut off (blackhole) or stopped (SIGSTOP) for STALLED_FOR_S.
STALLED_LEASE_S = 30.0 if FULL else 2.0
STALLED_FOR_S = 40.0 if FULL else 3 * STALLED_LEASE_S
# Shorter than the stall: time spent stopped must not time handlers out.
STALLED_MESSAGE_TIMEOUT_S = 30.0 if FULL else 2 * STALLED_LEASE_S
# Enough work of 0.1 s a message for both workers to be busy when one stalls and after: about
# 15 s (60 s at full length) for both together.
STALLED_LOAD = 6000 if FULL else 1500


def limit_s(shortened_s: float) -> float:
    """A test's time limit: ``shortened_s``, or five times it at full length."""
    return 5 * shortened_s if FULL else shortened_s
