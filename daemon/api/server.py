"""The http group: hypercorn's trio worker serving the app inside the supervisor nursery."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

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
        async with trio.open_nursery() as nursery:
            self.urls = await nursery.start(
                partial(serve, self._app, self._config(), shutdown_trigger=self._stop.wait)
            )
            log.info(
                "serving %s",
                " ".join(self.urls),
                extra={"action": "http.listening", "urls": self.urls},
            )
            task_status.started()

    def request_stop(self) -> None:
        self._stop.set()
