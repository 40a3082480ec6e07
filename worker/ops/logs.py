"""Logging set-up: text or JSON lines, with Redis credentials redacted from every line."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from worker.transport.layer import redact

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
#: Structured fields log calls pass in ``extra``; JSON lines carry them as keys.
MESSAGE_FIELDS = ("channel", "message_type", "attempt", "duration_ms", "worker_id")


class RedactingFilter(logging.Filter):
    """Removes passwords from Redis URLs in any log line, whoever logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            record.msg = redact(message)
            record.args = ()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        for name in MESSAGE_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class WorkerLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging()`` puts on the root logger: the worker's stderr."""


def logs_to_stderr() -> bool:
    """Whether the worker's own handler is on the root logger (``configure_logging()``)."""
    return any(isinstance(handler, WorkerLogHandler) for handler in logging.getLogger().handlers)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr in ``log_format`` ("text" or "json") at ``level``."""
    handler = WorkerLogHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


def message_fields(
    channel: str, message_type: str, attempt: int, duration_s: float | None = None
) -> dict[str, Any]:
    """``extra`` for a log line about one message."""
    fields: dict[str, Any] = {"channel": channel, "message_type": message_type, "attempt": attempt}
    if duration_s is not None:
        fields["duration_ms"] = round(duration_s * 1000, 3)
    return fields
