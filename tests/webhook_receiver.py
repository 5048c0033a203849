"""A real webhook receiver for tests: an HTTP server on loopback (in a thread, so it
serves whatever the test's event loop does) that verifies every request's signature
with :func:`daemon.modules.notifications.verify`, records it, and can be told to fail
(answer 503) or be stopped and started again on the same port (the receiver down)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

from daemon.modules.notifications import verify


@attrs.define
class Received:
    delivery_id: str
    valid: bool
    body: dict[str, Any]


class WebhookReceiver:
    def __init__(self, secret: str, port: int = 0) -> None:
        self.secret = secret
        self.port = port
        self.fail = False
        self.received: list[Received] = []
        self.refused = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if receiver.fail:
                    with receiver._lock:
                        receiver.refused += 1
                    self.send_response(503)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                valid = verify(receiver.secret, headers, body)
                with receiver._lock:
                    receiver.received.append(
                        Received(headers.get("webhook-id", ""), valid, json.loads(body))
                    )
                self.send_response(204 if valid else 401)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[str]:
        with self._lock:
            return [r.delivery_id for r in self.received]

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)
