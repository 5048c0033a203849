"""Requests refused by the HTTP server before the app (h11 inside hypercorn) get a
problem+json body too, and their connection is closed."""

from __future__ import annotations

import json

import pytest
import trio

from tests.e2e.raw_http import read_response

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"NOT A REQUEST LINE\r\n\r\n", 400),
        (b"GET /livez HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n", 400),
        (b"GET /livez HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Bad: a\x00b\r\n\r\n", 400),
        (b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100_000, 431),
    ],
)
async def test_server_level_refusals_are_problem_json(api, request_head, status):
    stream = await trio.open_tcp_stream("127.0.0.1", api.settings.http_port)
    async with stream:
        await stream.send_all(request_head)
        with trio.fail_after(10):
            got, headers, body = await read_response(stream)
            rest = await stream.receive_some(1024)
    assert got == status
    assert headers["content-type"] == PROBLEM
    assert headers["connection"] == "close"
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    assert rest == b""  # closed
