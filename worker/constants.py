"""Defaults, limits and timings of the worker, in one place."""

from __future__ import annotations

DEFAULT_CONCURRENCY = 10
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_MESSAGE_TIMEOUT_S = 600.0
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_LEASE_S = 30.0
DEFAULT_RETRY_BACKOFF_MIN_S = 1.0
DEFAULT_RETRY_BACKOFF_MAX_S = 300.0
# Warn at start-up when the layer drops queued messages sooner than this.
DEFAULT_EXPIRY_WARNING_S = 600.0
# At-least-once pops cannot block (a blocking pop could lose its message before the lease is
# written). Where Redis sends no key-tracking notices (transport.arrivals), an empty channel is
# polled instead, starting fast and slowing to this interval.
IDLE_POLL_MAX_S = 0.05
# Moving due retries and expired leases back onto channels.
MAINTENANCE_INTERVAL_S = 1.0
# How long one blocking pop waits for a message; also bounds how fast a stop is noticed.
POLL_TIMEOUT_S = 1.0
# Messages popped per round trip when a channel has a backlog.
MAX_BATCH = 100
RECONNECT_BACKOFF_MIN_S = 0.1
RECONNECT_BACKOFF_MAX_S = 5.0
# Added to every blocking wait to get the socket read timeout, so an idle connection is never
# mistaken for a dead one (redis-py 8 defaults to 5 s, exactly channels-redis's blocking wait).
READ_TIMEOUT_MARGIN_S = 10.0
# Each layer host lists this many of its most recently changed task results (`tasks list`).
RECENT_TASK_RESULTS_PER_HOST = 1000
