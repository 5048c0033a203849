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
- **Body deadline and budget** (:mod:`daemon.api.body_limits`): a body not whole within
  the body timeout is cut off with 408; a body that does not fit in the process's budget
  of body bytes in flight is refused with 503 and ``Retry-After``, before it is read when
  its length is declared. Both answers close the connection (the rest of the body is
  never read).
- **Client address.** Behind trusted proxies, the address from ``X-Forwarded-For``
  replaces the peer in the scope (:mod:`daemon.api.proxies`), so the app, the audit log
  and the login throttle see the real client.
- **Security headers** on every response: ``X-Content-Type-Options: nosniff``,
  ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``, a
  ``Content-Security-Policy`` that allows nothing unless the app set a stricter-scoped one
  (the HTML docs page does), and ``Cache-Control: no-store`` on everything under
  ``/api/`` and on any request that carried credentials, unless the app chose otherwise.
- **CORS** (:mod:`daemon.api.cors`): off unless origins are allowed.
- **Reads first** (:mod:`daemon.shared.loop_priority`): while a GET, HEAD or OPTIONS
  request is in flight (until its response starts going out), the queue's
  work and the other requests on this event loop step aside at their next database
  checkout or CPU hand-off.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from daemon.api.body_limits import BodyBudget, BodyFault, BodyReader
from daemon.api.cors import CorsPolicy
from daemon.api.problems import PROBLEM_JSON, title_for
from daemon.api.proxies import Network, client_address
from daemon.shared.logs import request_id_var

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.shared.loop_priority import LoopPriority

log = logging.getLogger("triaged.access")

Scope = dict[str, Any]
Message = dict[str, Any]

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BASE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
DEFAULT_CSP = b"default-src 'none'; frame-ancestors 'none'"
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0
RETRY_AFTER_SECONDS = 5  # after a 503 for the budget of body bytes in flight
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class Edge:
    """ASGI middleware wrapping the app; see the module docstring."""

    def __init__(
        self,
        app: Any,
        *,
        max_body_bytes: int,
        cors: CorsPolicy | None = None,
        trusted_proxies: tuple[Network, ...] = (),
        body_timeout: float = DEFAULT_BODY_TIMEOUT_SECONDS,
        body_budget: BodyBudget | None = None,
        priority: LoopPriority | None = None,
    ) -> None:
        self.app = app
        self.priority = priority
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.body_budget = body_budget or BodyBudget(max_body_bytes)
        self.cors = cors or CorsPolicy.of(())
        self.trusted_proxies = trusted_proxies
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
        if self.priority is None:
            await self._exchange(scope, receive, send)
        elif scope.get("method") in _READS:
            # A read goes first: queue work and writes on this loop step aside until its
            # response starts going out (its first body chunk).
            with self.priority.foreground() as read:
                await self._exchange(scope, receive, send, read.end)
        else:
            with self.priority.background_block():
                await self._exchange(scope, receive, send)

    async def _exchange(
        self, scope: Scope, receive: Any, send: Any, on_body: Callable[[], None] | None = None
    ) -> None:
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0
        scope = self._with_client(scope)
        origin = _header(scope, b"origin")
        preflight = _is_preflight(scope) and self.cors.enabled
        cors_headers = [] if preflight else self.cors.response_headers(origin)
        no_store = scope.get("path", "").startswith("/api/") or (
            _header(scope, b"authorization") is not None
        )

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", DEFAULT_CSP))
                if no_store and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                headers += cors_headers
                message["headers"] = [
                    *headers,
                    *_BASE_HEADERS,
                    (b"x-request-id", request_id.encode()),
                ]
            elif on_body is not None:  # the body goes out: the read is done with the loop
                on_body()
            await self._send_shielded(send, message)

        try:
            if preflight:
                preflight_status, headers = self.cors.preflight(origin)
                await _answer_empty(send_with_headers, preflight_status, headers)
            elif (_declared_length(scope) or 0) > self.max_body_bytes:
                limit = self.max_body_bytes
                detail = f"The request body is larger than the limit of {limit} bytes."
                await _refuse(send_with_headers, 413, detail, {})
            else:
                await self._call_app(scope, receive, send_with_headers, lambda: status)
        finally:
            if log.isEnabledFor(logging.INFO):  # its extra costs even when not logged
                _log_access(scope, status, started)
            request_id_var.reset(token)

    async def _call_app(self, scope: Scope, receive: Any, send: Any, status: Any) -> None:
        """Run the app with its body under the deadline and the budget; answer 408 or
        503 for it when the body was cut off before the app answered."""
        with trio.CancelScope() as app_scope:
            reader = BodyReader(
                receive,
                budget=self.body_budget,
                deadline=trio.current_time() + self.body_timeout,
                app_scope=app_scope,
            )
            try:
                if reader.admit(_declared_length(scope)):
                    await self.app(scope, reader.receive, send)
            finally:
                reader.close()
        if reader.fault is None or status():
            return
        if reader.fault is BodyFault.TOO_SLOW:
            detail = f"The request body did not arrive within {self.body_timeout:g} seconds."
            await _refuse(send, 408, detail, {})
        else:
            detail = "The server is receiving too many request bodies at once; try again."
            await _refuse(send, 503, detail, {b"retry-after": str(RETRY_AFTER_SECONDS).encode()})

    def _with_client(self, scope: Scope) -> Scope:
        if not self.trusted_proxies or not scope.get("client"):
            return scope
        peer = scope["client"][0]
        forwarded = [
            value.decode("latin-1")
            for name, value in scope.get("headers", [])
            if name == b"x-forwarded-for"
        ]
        client = client_address(peer, forwarded, self.trusted_proxies)
        if client == peer:
            return scope
        return {**scope, "client": (client, 0)}


def _log_access(scope: Scope, status: int, started: float) -> None:
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


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def _is_preflight(scope: Scope) -> bool:
    return (
        scope.get("method") == "OPTIONS"
        and _header(scope, b"access-control-request-method") is not None
    )


async def _answer_empty(send: Any, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _request_id(scope: Scope) -> str:
    candidate = _header(scope, b"x-request-id")
    if candidate is not None and _SANE_REQUEST_ID.match(candidate):
        return candidate
    return uuid.uuid4().hex


def _declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` (hypercorn has checked it is a valid one)."""
    value = _header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


async def _refuse(send: Any, status: int, detail: str, headers: dict[bytes, bytes]) -> None:
    """A problem+json answer that closes the connection (the body is left unread)."""
    body = json.dumps(
        {
            "type": "about:blank",
            "title": title_for(status),
            "status": status,
            "detail": detail,
            "request_id": request_id_var.get(),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers.items(),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
