"""Where the database comes from: the configured URL, or the embedded server."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from daemon.shared.db import embedded

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from daemon.shared.config import Settings

log = logging.getLogger("triaged.db")


@asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """The URL to connect to for the duration of the block.

    With ``TRIAGED_DATABASE_URL`` set, that URL, and no server is ever started. Without
    it, the embedded PostgreSQL under ``TRIAGED_DATA_DIR`` is started on entry and
    stopped on exit, even when the block is cancelled. A cluster owned by another live
    triaged process (a ``triaged jobs list`` beside a running service) is used and left
    running; one left running by a killed process is taken over (see
    :func:`embedded.start`).

    Raises:
        EmbeddedDatabaseError: the embedded server could not be started.
    """
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    log.info(
        "starting embedded PostgreSQL in %s",
        settings.data_dir,
        extra={"action": "db.embedded_start"},
    )
    # Shielded: a cancel arriving mid-start must not lose the handle of a started server;
    # it is delivered at the next checkpoint, inside the try, and the server is stopped.
    with trio.CancelScope(shield=True):
        server = await trio.to_thread.run_sync(embedded.start, settings.data_dir)
    if not server.owned:
        log.info(
            "embedded PostgreSQL owned by another triaged process; left running on exit",
            extra={"action": "db.embedded_reuse"},
        )
    try:
        yield server.url
    finally:
        if server.owned:
            with trio.CancelScope(shield=True):
                log.info("stopping embedded PostgreSQL", extra={"action": "db.embedded_stop"})
                await trio.to_thread.run_sync(embedded.stop, server)
