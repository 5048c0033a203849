"""The ASGI edge around the Quart app: what every HTTP exchange goes through.

- **Keep-alive fix.** quart-trio 0.12 cancels the task that is still inside the ASGI
  ``send`` of a response's last message, so hypercorn never re-arms the connection's idle
  timer: idle keep-alive connections then live forever and delay every shutdown by the
  full graceful timeout. Running ``send`` in a shielded scope lets hypercorn finish its
  bookkeeping (see ``tests/e2e/test_http_drain.py`` for the test that fails without it).
  A shield must not outlive the server, though: a client that stops reading would keep
  its ``send`` blocked forever. When the http group is cancelled (its grace deadline, a
  second signal), :meth:`Edge.abort_sends` cancels every shielded send and stops
  shielding new ones.
- **Request id.** ``X-Request-ID`` is taken from the request when it is sane, else
  generated; it is echoed on the response and set in a context variable, so every log
  line written while serving the request carries it.
- **Access log.** One line per request: method, path, status, duration, client.
- **Body limit.** A declared ``Content-Length`` above the limit is refused with 413
  before the app runs; bodies without a length are bounded by Quart's
  ``MAX_CONTENT_LENGTH`` as they are read.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from functools import partial
from typing import Any

import trio

from daemon.api.problems import PROBLEM_JSON
from daemon.shared.logs import request_id_var

log = logging.getLogger("triaged.access")

Scope = dict[str, Any]
Message = dict[str, Any]

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BASE_HEADERS = [(b"x-content-type-options", b"nosniff")]


class Edge:
    """ASGI middleware wrapping the app; see the module docstring."""

    def __init__(self, app: Any, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._shields: set[trio.CancelScope] = set()
        self._aborted = False

    async def _send_shielded(self, send: Any, message: Message) -> None:
        if self._aborted:
            await send(message)
            return
        with trio.CancelScope(shield=True) as shield:
            self._shields.add(shield)
            try:
                await send(message)
            finally:
                self._shields.discard(shield)

    def abort_sends(self) -> None:
        """Cancel every shielded ``send`` in progress and shield no more (idempotent)."""
        self._aborted = True
        for shield in list(self._shields):
            shield.cancel()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, partial(self._send_shielded, send))
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    *_BASE_HEADERS,
                    (b"x-request-id", request_id.encode()),
                ]
            await self._send_shielded(send, message)

        try:
            if _declared_length(scope) > self.max_body_bytes:
                await _refuse_too_large(send_with_headers, request_id, self.max_body_bytes)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            log.info(
                "%s %s %s",
                scope.get("method"),
                scope.get("path"),
                status or "-",
                extra={
                    "action": "http.request",
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status or None,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": (scope.get("client") or ("-",))[0],
                },
            )
            request_id_var.reset(token)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SANE_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _refuse_too_large(send: Any, request_id: str, limit: int) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Content Too Large",
            "status": 413,
            "detail": f"The request body is larger than the limit of {limit} bytes.",
            "request_id": request_id,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
