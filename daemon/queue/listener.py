"""The listener: a LISTEN connection that wakes the fetchers when jobs are enqueued.

Enqueues NOTIFY the queue's channel (``queue_notify_channel()`` in the database, its one
definition) with the queue name as payload, delivered at commit. A lost connection is
reopened with backoff (0.5 s doubling to 30 s); meanwhile the due scan wakes the fetchers
(:mod:`daemon.queue.due_scan`). On every (re)connect all fetchers are woken, since
notifications may have been missed while away.
Off (``WorkerOptions.listen=False``) for poolers that drop LISTEN.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NoReturn

import psycopg
import trio
from psycopg import sql

from daemon.queue.store import notify_channel

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("triaged.queue")


async def listen_for_jobs(
    conninfo: str, poll_interval: float, wake: Callable[[str | None], None]
) -> NoReturn:
    """Call ``wake(queue)`` for each notification, ``wake(None)`` (every queue) on each
    (re)connect; runs until cancelled."""
    from daemon.shared.db.psycopg_trio import TrioConnection

    delay = 0.5
    while True:
        try:
            conn = await TrioConnection.connect(conninfo, autocommit=True)
            async with conn:
                await conn.execute(sql.SQL("LISTEN {}").format(await notify_channel(conn)))
                delay = 0.5
                wake(None)  # notifications may have been missed while away
                async for notification in conn.notifies():
                    wake(notification.payload)
        except psycopg.Error as exc:
            log.warning(
                "LISTEN connection lost (%s); scanning for due jobs every %.1fs until it is back",
                type(exc).__name__,
                poll_interval,
                extra={"action": "queue.listen_lost"},
            )
        await trio.sleep(delay)
        delay = min(delay * 2, 30.0)
