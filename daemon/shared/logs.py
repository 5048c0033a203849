"""Structured logging: JSON lines for machines, readable text for people.

Every record may carry typed fields through ``extra=`` (``action`` first among them);
the request id of the HTTP request being served is added from a context variable, so
every line logged while serving a request names it. Fields whose name suggests a secret
are replaced by ``***`` before any formatter sees them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any, TextIO

from daemon.shared.config import LogFormat, LogLevel, Settings

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

_SECRET_MARKERS = ("password", "secret", "token", "authorization", "api_key", "database_url")


def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record (its ``extra=``), secrets masked."""
    fields = {
        key: ("***" if _is_secret(key) else value)
        for key, value in record.__dict__.items()
        if key not in _STANDARD_ATTRS and not key.startswith("_")
    }
    request_id = request_id_var.get()
    if request_id is not None and "request_id" not in fields:
        fields["request_id"] = request_id
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(record_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level logger: message key=value ...`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = " ".join(f"{k}={v}" for k, v in record_fields(record).items())
        line = f"{clock} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            line = f"{line}  {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _iso_time(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def configure_logging(
    settings: Settings, stream: TextIO | None = None, *, quiet: bool = False
) -> None:
    """Install the root handler once, for the whole process.

    ``quiet`` (one-shot CLI commands): log warnings and errors only, unless the
    configured level is DEBUG.
    """
    out = stream or sys.stdout
    fmt = settings.log_format
    if fmt is LogFormat.AUTO:
        fmt = LogFormat.TEXT if out.isatty() else LogFormat.JSON
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if fmt is LogFormat.JSON else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = settings.log_level.value
    if quiet and settings.log_level is not LogLevel.DEBUG:
        level = max(logging.getLevelName(level), logging.WARNING)
    root.setLevel(level)
    # hypercorn and quart log through their own loggers: keep their noise at warning,
    # triaged writes its own access log.
    for noisy in ("hypercorn.error", "hypercorn.access", "quart.app", "quart.serving"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
