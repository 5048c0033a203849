"""Defect 5 of issue 12, through the real request path: a hostile request path may not
forge a log line in either format (the access log writes the percent-decoded path)."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from daemon.shared.config import LogFormat, Settings
from daemon.shared.logs import configure_logging
from tests.integration.api_server import serve_api

FORGED = "admin logged in"
PATHS = [
    "/x%0D%0A12:00:00%20INFO%20%20%20%20triaged.auth:%20" + FORGED.replace(" ", "%20"),
    "/x%0A%7B%22level%22:%22info%22,%22msg%22:%22admin%20logged%20in%22%7D",
    "/x%C2%85forged%E2%80%A8forged%E2%80%A9forged%0Bforged%0Cforged",
    "/x%1B%5B2J%1B%5D0;pwned%07",
]
TEXT_RECORD = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@pytest.fixture
def log_stream():
    """The root logger writing to a string for the test, restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()

    def configure(fmt: LogFormat) -> io.StringIO:
        configure_logging(Settings(log_format=fmt, log_level="INFO"), stream=stream)
        return stream

    yield configure
    root.handlers[:], level = saved
    root.setLevel(level)


async def _send_hostile_paths(pool) -> None:
    async with serve_api(pool) as api, api.client() as client:
        for path in PATHS:
            response = await client.get(path)
            assert response.status_code == 404


async def test_text_log_lines_cannot_be_forged_by_a_path(pool, log_stream):
    stream = log_stream(LogFormat.TEXT)
    await _send_hostile_paths(pool)
    lines = stream.getvalue().splitlines()
    access = [line for line in lines if "action=http.request" in line]
    assert len(access) == len(PATHS), lines
    for line in lines:
        assert TEXT_RECORD.match(line) or line.startswith("  | "), line
        assert line.isprintable(), line
    assert not any(line.startswith("12:00:00") for line in lines)
    assert any("/x\\r\\n12:00:00 INFO    triaged.auth: admin logged in" in line for line in access)


async def test_json_log_lines_cannot_be_forged_by_a_path(pool, log_stream):
    stream = log_stream(LogFormat.JSON)
    await _send_hostile_paths(pool)
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line is a whole record
    access = [r for r in records if r.get("action") == "http.request"]
    assert [r["path"] for r in access] == [
        "/x\r\n12:00:00 INFO    triaged.auth: admin logged in",
        '/x\n{"level":"info","msg":"admin logged in"}',
        "/x\x85forged\u2028forged\u2029forged\x0bforged\x0cforged",
        "/x\x1b[2J\x1b]0;pwned\x07",
    ]
    assert all(line.isprintable() for line in lines)
