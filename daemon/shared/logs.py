"""Structured logging: JSON lines for machines, readable text for people.

Every record may carry typed fields through ``extra=`` (``action`` first among them);
the request id of the HTTP request being served is added from a context variable, so
every line logged while serving a request names it. Fields whose name suggests a secret
are replaced by ``***`` before any formatter sees them.

One record is one line, whatever it carries: values come from clients (a request path,
a header, an email), so neither format may let them start a line of their own. The text
format escapes every control character, line separator and bidirectional override in
the message and in every key and value (``\\n``, ``\\x1b``, ``\\u2028``; a backslash is
doubled), quotes values holding spaces, quotes or ``=``, and prefixes each line of a
traceback with ``  | ``. The JSON format escapes, beyond what JSON requires, DEL, the C1
controls (U+0085 among them) and U+2028/U+2029, which line-oriented readers split on,
and the bidirectional controls.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
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
        return escape_json_line(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level logger: message key=value ...`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = " ".join(
            f"{escape_text(str(k))}={_text_value(v)}" for k, v in record_fields(record).items()
        )
        line = (
            f"{clock} {escape_text(record.levelname):<7} {escape_text(record.name)}: "
            f"{escape_text(record.getMessage())}"
        )
        if fields:
            line = f"{line}  {fields}"
        if record.exc_info:
            # A traceback keeps its lines, each marked so that none reads as a record.
            trace = self.formatException(record.exc_info).split("\n")
            line = "\n".join([line, *(f"  | {escape_text(part)}" for part in trace)])
        return line


# C0 and C1 controls, DEL, the Unicode line and paragraph separators, bidirectional
# embeddings, overrides and isolates (which reorder what a terminal shows), backslash.
_UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\\\\]")
# What json.dumps leaves raw that a line-oriented reader may split on, or a terminal
# act on or reorder.
_UNSAFE_JSON = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_QUOTES = re.compile(r'[\s"=]')


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_text(value: str) -> str:
    """``value`` with no character that could end a line, move the cursor or reorder
    text: each is written as its escape sequence, a backslash as two."""
    return _UNSAFE_TEXT.sub(_escape_char, value)


def escape_json_line(line: str) -> str:
    """A JSON document (from ``json.dumps``) with DEL, C1 controls, U+2028/U+2029 and
    bidirectional controls written as ``\\uXXXX`` escapes; it decodes to the same value.
    Safe on a whole document: outside strings JSON holds only ASCII."""
    return _UNSAFE_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", line)


def _text_value(value: object) -> str:
    text = escape_text(str(value))
    if not text or _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '\\"') + '"'
    return text


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
