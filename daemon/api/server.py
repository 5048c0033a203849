"""The http group: hypercorn's trio worker serving the app inside the supervisor nursery."""

from __future__ import annotations

import logging
import os
import socket
import stat
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from daemon.api import hypercorn_connection

if TYPE_CHECKING:
    from daemon.shared.config import Settings

log = logging.getLogger("triaged.http")

# The supervisor enforces the HTTP grace deadline itself (and knows when it had to);
# hypercorn's own graceful timeout is only a backstop just after it.
_BACKSTOP_SECONDS = 1.0


class HttpService:
    """Serves ``asgi_app`` on the configured host and port until asked to stop.

    On ``request_stop`` the listening socket closes at once (new connections are
    refused), idle keep-alive connections are closed, and ``run`` returns when the last
    in-flight request has been answered.
    """

    name = "http"

    def __init__(self, asgi_app: Any, settings: Settings) -> None:
        hypercorn_connection.install()  # fewer schedule points; problem+json refusals
        self._app = asgi_app
        self._settings = settings
        self._stop = trio.Event()
        self.urls: list[str] = []

    def _config(self) -> Config:
        config = Config()
        host = self._settings.http_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        config.bind = [f"{host}:{self._settings.http_port}"]
        config.keep_alive_timeout = self._settings.http_keep_alive_seconds
        config.graceful_timeout = self._settings.http_grace_seconds + _BACKSTOP_SECONDS
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.include_server_header = False
        config.h11_max_incomplete_size = 64 * 1024
        return config

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as watch:
            watch.start_soon(self._abort_sends_when_cancelled)
            async with trio.open_nursery() as server:
                self.urls = await server.start(
                    partial(serve, self._app, self._config(), shutdown_trigger=self._stop.wait)
                )
                log.info(
                    "serving %s",
                    " ".join(self.urls),
                    extra={"action": "http.listening", "urls": self.urls},
                )
                task_status.started()
            watch.cancel_scope.cancel()

    async def _abort_sends_when_cancelled(self) -> None:
        """When the group is cancelled, unblock sends to clients that stopped reading.

        Runs beside the server: a cancellation reaches it at once, while the server's
        own tasks may sit in shielded sends (see :mod:`daemon.api.edge`).
        """
        try:
            await trio.sleep_forever()
        finally:
            abort = getattr(self._app, "abort_sends", None)
            if abort is not None:
                abort()
            # hypercorn shields its own socket writes too: a client that stopped reading
            # would still hold its connection's task. Shutting the connection down makes
            # that write fail at once.
            shut = shutdown_connections(self._ports())
            if shut:
                log.warning(
                    "closed %d client connection(s) still being written to",
                    shut,
                    extra={"action": "http.connections_aborted", "count": shut},
                )

    def request_stop(self) -> None:
        self._stop.set()

    def _ports(self) -> set[int]:
        ports = set()
        for url in self.urls:
            port = url.rsplit(":", 1)[-1]
            if port.isdigit():
                ports.add(int(port))
        return ports


def shutdown_connections(local_ports: set[int]) -> int:
    """``shutdown()`` every TCP connection of this process accepted on ``local_ports``.

    Finds them through ``/proc/self/fd`` (Linux); works on a duplicate of each
    descriptor, so the owner's socket object stays valid and is closed by its owner.
    Returns how many were shut down (0 where ``/proc`` is missing).
    """
    try:
        descriptors = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return 0
    count = 0
    for fd in descriptors:
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            duplicate = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with duplicate:
            try:
                if duplicate.type != socket.SOCK_STREAM:
                    continue
                if duplicate.family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                local_port = duplicate.getsockname()[1]
                duplicate.getpeername()  # raises for listening sockets
                if local_port in local_ports:
                    duplicate.shutdown(socket.SHUT_RDWR)
                    count += 1
            except OSError:
                continue
    return count
