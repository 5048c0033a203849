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
