"""The heartbeat: renews the leases of all running jobs in one statement every third of
the lease.

A job whose lease is gone (rescued after a stall, or cancelled by an operator) loses its
place in its batch (:meth:`daemon.queue.executor.Batch.lose`): its handler is cancelled
once every job of the batch is lost, and its outcome is fenced out by the lease token.
While renewals fail, a handler whose lease may expire (80 % of it without a renewal) is
given up the same way, so that it never runs beside a rescued copy of its job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

import psycopg
import trio

from daemon.queue import store
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    import uuid

    from daemon.queue.executor import Batch
    from daemon.queue.jobs import Job
    from daemon.shared.db.pool import Pool

log = logging.getLogger("triaged.queue")


@dataclass(eq=False)
class Running:
    """A claimed job being run, and when its lease was last known held."""

    job: Job
    batch: Batch
    renewed_at: float = field(default_factory=trio.current_time)


# Keyed by (id, lease token): a hung attempt and its rescued retry may both be here.
RunningJobs = dict[tuple[int, "uuid.UUID"], Running]


async def renew_leases(pool: Pool, running: RunningJobs, lease_seconds: float) -> NoReturn:
    """Renew the leases in ``running`` every ``lease_seconds / 3`` until cancelled."""
    interval = lease_seconds / 3
    while True:
        await trio.sleep(interval)
        entries = list(running.values())
        if not entries:
            continue
        try:
            async with pool.transaction() as conn:
                held = await store.renew_leases(
                    conn, [(r.job.id, r.job.lease_token) for r in entries], lease_seconds
                )
        except (psycopg.Error, DatabaseError) as exc:
            log.warning(
                "renewing %d lease(s) failed: %s",
                len(entries),
                exc,
                extra={"action": "queue.heartbeat_failed"},
            )
            _give_up_stale_leases(entries, lease_seconds)
            continue
        now = trio.current_time()
        for entry in entries:
            if (entry.job.id, entry.job.lease_token) in held:
                entry.renewed_at = now
            else:
                entry.batch.lose(entry.job)


def _give_up_stale_leases(running: list[Running], lease_seconds: float) -> None:
    """Cancel handlers whose lease may have expired while renewals failed.

    Another process may rescue such a job and run it; this one must not run on beside
    it. Cancelled a little before the lease can expire (renewals every third of it).
    """
    limit = lease_seconds * 0.8
    now = trio.current_time()
    for entry in running:
        key = (entry.job.id, entry.job.lease_token)
        if now - entry.renewed_at >= limit and key not in entry.batch.lost:
            log.warning(
                "job %d cancelled: its lease could not be renewed for %.1fs",
                entry.job.id,
                now - entry.renewed_at,
                extra={
                    "action": "job.lease_lost",
                    "job_id": entry.job.id,
                    "queue": entry.job.queue,
                    "attempt": entry.job.attempt,
                },
            )
            entry.batch.lose(entry.job)
