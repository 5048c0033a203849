"""Problem details for the requests hypercorn refuses before the app sees them.

A malformed request line, a negative or doubled ``Content-Length``, control characters
in a header or an oversized header block are refused by h11 inside hypercorn, with a
400 (or 431) and an empty body; the app and :mod:`daemon.api.edge` never run. Hypercorn
has no hook for that response, so its HTTP/1.1 protocol class is replaced (by
:func:`daemon.api.hypercorn_connection.install`) by a subclass of :class:`ProblemH11Protocol`,
whose error response carries an ``application/problem+json`` body like every other error
of the API (and still closes the connection).

Tied to hypercorn's internals (``H11Protocol._send_error_response``, 0.18): a test
(``tests/integration/test_api_protocol_errors.py``) fails if an upgrade changes them.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from itertools import chain

import h11
from hypercorn.protocol.h11 import H11Protocol

from daemon.api.problems import PROBLEM_JSON, title_for

_DETAILS = {
    400: "The request is not valid HTTP/1.1 (request line, header or Content-Length).",
    431: "The request's header block is too large.",
}


def problem_body(status: int) -> bytes:
    """The problem+json body of a refusal by the HTTP server itself."""
    detail = _DETAILS.get(status) or HTTPStatus(status).description
    return json.dumps(
        {"type": "about:blank", "title": title_for(status), "status": status, "detail": detail}
    ).encode()


class ProblemH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol with a problem+json body on its own error responses."""

    async def _send_error_response(self, status_code: int) -> None:
        body = problem_body(status_code)
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await self._send_h11_event(
            h11.Response(
                status_code=status_code,
                headers=list(chain(headers, self.config.response_headers("h11"))),
            )
        )
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())
