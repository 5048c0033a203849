from __future__ import annotations

import io
import json
import logging

from daemon.shared.config import LogFormat, Settings
from daemon.shared.logs import configure_logging, request_id_var


def _capture(fmt: LogFormat) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(Settings(log_format=fmt), stream=stream)
    return stream


def test_json_lines_carry_fields_and_the_request_id():
    stream = _capture(LogFormat.JSON)
    token = request_id_var.set("req-123")
    try:
        logging.getLogger("triaged.test").info("hello %s", "world", extra={"action": "t.x", "n": 3})
    finally:
        request_id_var.reset(token)
    record = json.loads(stream.getvalue().splitlines()[-1])
    assert record["msg"] == "hello world"
    assert record["level"] == "info"
    assert record["action"] == "t.x" and record["n"] == 3
    assert record["request_id"] == "req-123"


def test_secret_fields_are_masked_in_both_formats():
    for fmt in (LogFormat.JSON, LogFormat.TEXT):
        stream = _capture(fmt)
        logging.getLogger("triaged.test").warning(
            "login", extra={"password": "hunter2", "api_key": "k-123", "user": "ann"}
        )
        out = stream.getvalue()
        assert "hunter2" not in out and "k-123" not in out
        assert "ann" in out


def test_auto_format_is_json_when_not_a_terminal():
    stream = _capture(LogFormat.AUTO)
    logging.getLogger("triaged.test").info("x")
    json.loads(stream.getvalue().splitlines()[-1])


# Everything str.splitlines() (and so many line-oriented readers) splits on, the escape
# character of terminal sequences, and a right-to-left override.
HOSTILE = [
    "a\nb",
    "a\rb",
    "a\r\n12:00:00 INFO    triaged.auth: admin logged in  action=auth.login",
    'a\n{"ts": "2026-01-01T00:00:00.000Z", "level": "info", "msg": "forged"}',
    "a\x0bb\x0cc\x1cd\x1de\x1ef",
    "a\x85b",
    "a\u2028b",
    "a\u2029b",
    "a\x1b[2Jb\x07",
    "a\x00b\x7fc\x9bd",
    "user\u202etxt.exe",
    "a\\nb",
]


def _one_record_per_line(stream: io.StringIO, records: int) -> list[str]:
    lines = stream.getvalue().splitlines()
    assert len(lines) == records, lines
    return lines


def test_text_format_keeps_hostile_messages_and_fields_on_one_line():
    stream = _capture(LogFormat.TEXT)
    logger = logging.getLogger("triaged.test")
    for value in HOSTILE:
        logger.info("GET %s 404", value, extra={"action": "http.request", "path": value})
        logger.info(value, extra={value: "key"})
    lines = _one_record_per_line(stream, 2 * len(HOSTILE))
    for line in lines:
        assert line.isprintable(), line
        assert not any(c in line for c in "\x1b\x85\u2028\u2029\u202e")
    assert "GET a\\r\\n12:00:00 INFO" in stream.getvalue()
    # A value can not forge another field either: spaces, quotes and '=' are quoted.
    assert 'path="a\\r\\n12:00:00 INFO    triaged.auth: admin logged in  action=auth.login"' in (
        stream.getvalue()
    )
    # A literal backslash stays distinguishable from an escape.
    assert "path=a\\\\nb" in stream.getvalue()


def test_text_format_marks_every_line_of_a_traceback():
    stream = _capture(LogFormat.TEXT)
    try:
        raise ValueError("bad path /x\r\n12:00:00 INFO    triaged.auth: forged\u2028too")
    except ValueError:
        logging.getLogger("triaged.test").exception("failed", extra={"action": "t.crash"})
    first, *trace = stream.getvalue().rstrip("\n").split("\n")
    assert first.endswith("failed  action=t.crash")
    assert trace and all(line.startswith("  | ") for line in trace), trace
    assert "\r" not in stream.getvalue() and "\u2028" not in stream.getvalue()
    assert any("forged\\u2028too" in line for line in trace)


def test_json_format_escapes_every_line_separator_and_round_trips():
    stream = _capture(LogFormat.JSON)
    logger = logging.getLogger("triaged.test")
    for value in HOSTILE:
        logger.info("GET %s 404", value, extra={"action": "http.request", "path": value})
        logger.info(value, extra={value: "key"})
    lines = _one_record_per_line(stream, 2 * len(HOSTILE))
    for line in lines:
        assert line.isprintable(), line
    records = [json.loads(line) for line in lines]
    for value, (request, keyed) in zip(
        HOSTILE, zip(records[::2], records[1::2], strict=True), strict=True
    ):
        assert request["path"] == value and request["msg"] == f"GET {value} 404"
        assert keyed["msg"] == value and keyed[value] == "key"


def test_json_format_escapes_separators_in_a_traceback():
    stream = _capture(LogFormat.JSON)
    try:
        raise ValueError("forged\u2028\x85line")
    except ValueError:
        logging.getLogger("triaged.test").exception("failed")
    (line,) = _one_record_per_line(stream, 1)
    assert "forged\u2028\x85line" in json.loads(line)["exc"]
