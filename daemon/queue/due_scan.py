"""The due scan: one statement per poll interval wakes the fetchers that have work.

A fetcher that finds nothing (or less than it asked for) to claim sleeps until it is
kicked: by a NOTIFY for its queue (the listener: enqueues, resumes, retries, rescues) or
by this scan. Every ``poll_interval`` the scan asks, for all the worker's queues in one
read, which are not paused and have a job due now, and kicks those fetchers. That covers
what sends no NOTIFY when it comes due: a delayed or snoozed job, a retry after its
backoff; and every enqueue when LISTEN is off or its connection is down.

It replaces a claim per queue per interval: a worker serving thirty idle queues sends
one read a second instead of thirty claims (each an ``UPDATE`` in a transaction of its
own). A job becomes claimable no later than before: within one interval of being due,
plus the scan's own time. (A queue held back by its global cap still has due jobs, so
its fetcher is kicked, and claims, once per interval, as before.)

A scan that fails, or takes longer than ``SCAN_TIMEOUT_SECONDS``, kicks every fetcher:
their claims then fail in turn and back off, or find the jobs, as when each fetcher
polled by itself. The first failure is logged as a warning, the recovery as info.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NoReturn

import psycopg
import trio

from daemon.queue import store
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from daemon.shared.db.pool import Pool

log = logging.getLogger("triaged.queue")

SCAN_TIMEOUT_SECONDS = 10.0


async def scan_for_due_jobs(
    pool: Pool, queues: Sequence[str], interval: float, wake: Callable[[str], None]
) -> NoReturn:
    """Call ``wake(queue)`` for each of ``queues`` with a job due, every ``interval``
    seconds, until cancelled. The scan only reads: cancelling it loses nothing."""
    names = list(queues)
    failing = False
    while True:
        await trio.sleep(interval)
        due = await _due(pool, names)
        if due is None:
            if not failing:
                log.warning(
                    "scanning for due jobs failed; every fetcher claims once per interval "
                    "until it works again",
                    extra={"action": "queue.due_scan_failed"},
                )
            failing = True
            due = names
        elif failing:
            failing = False
            log.info("scanning for due jobs works again", extra={"action": "queue.due_scan_ok"})
        for queue in due:
            wake(queue)


async def _due(pool: Pool, names: list[str]) -> list[str] | None:
    """The queues with a job due, or None if the scan failed or timed out."""
    with trio.move_on_after(SCAN_TIMEOUT_SECONDS):
        try:
            async with pool.connection() as conn:
                await conn.set_autocommit(True)  # one statement, no BEGIN or ROLLBACK
                return await store.due_queues(conn, names)
        except (psycopg.Error, DatabaseError):
            return None
    return None
