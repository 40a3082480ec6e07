"""Counters kept by a running worker."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Stats:
    """What happened to the messages this worker took, for logs and health."""

    received: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    dead_trimmed: int = 0
    redelivered: int = 0
    timed_out: int = 0
    invalid: int = 0
    returned: int = 0
    cancelled: int = 0
    redis_errors: int = 0
    listener_restarts: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def summary(self) -> str:
        return " ".join(
            f"{name}={value}"
            for name, value in self.as_dict().items()
            if name in ("received", "completed", "failed", "retried", "dead", "invalid", "returned")
            or name == "cancelled"
        )
