"""Queue maintenance: rescue jobs whose lease expired, purge finished jobs past retention.

Runs in every worker process (the supervisor's scheduler group), but each pass takes a
transaction-level advisory lock first, so one process at a time does the work; the
others skip that pass. No leader election, no state to hand over when a process dies.

* **Rescue** (every ``rescue_interval``): an ``active`` job whose lease expired belonged
  to a worker that died or hung: it goes back to ``retry`` (available at once), or to
  ``failed`` when that was its last attempt. The attempt counts. The old worker, if it is
  still alive, can no longer complete it: its lease token no longer matches.
* **Retention** (every ``retention_interval``): completed, cancelled and failed jobs older
  than their queue's retention (or the defaults) are deleted in batches of
  ``purge_batch`` rows, each batch its own short transaction, so the table never holds
  long locks and autovacuum keeps up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import psycopg
import trio
import trio.lowlevel

from daemon.queue import maintenance_store
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    from daemon.queue.metrics import QueueMetrics
    from daemon.shared.db.pool import Pool

log = logging.getLogger("triaged.queue.maintenance")


@dataclass(frozen=True, kw_only=True)
class MaintenanceOptions:
    rescue_interval: float = 2.0
    retention_interval: float = 60.0
    retain_completed_seconds: float = 86_400.0  # 1 day
    retain_failed_seconds: float = 14 * 86_400.0  # 14 days (cancelled too)
    purge_batch: int = 1000
    rescue_batch: int = 1000


async def rescue_expired(pool: Pool, limit: int = 1000, metrics: QueueMetrics | None = None) -> int:
    """One rescue pass; the number of jobs rescued (0 when another process holds the lock)."""
    async with pool.transaction() as conn:
        if not await maintenance_store.try_maintenance_lock(conn):
            return 0
        rows = await maintenance_store.rescue_expired_jobs(conn, limit)
    for job_id, queue, state, attempts in rows:
        if metrics is not None:
            metrics.rescued.inc(queue)
        log.warning(
            "job %d rescued: lease expired; now %s",
            job_id,
            state,
            extra={
                "action": "job.rescued",
                "job_id": job_id,
                "queue": queue,
                "attempt": attempts,
                "state": state,
            },
        )
    return len(rows)


async def purge_finished(pool: Pool, options: MaintenanceOptions) -> int:
    """Delete finished jobs past retention in batches; the number deleted."""
    total = 0
    for state, default_seconds in (
        ("completed", options.retain_completed_seconds),
        ("cancelled", options.retain_failed_seconds),
        ("failed", options.retain_failed_seconds),
    ):
        while True:
            async with pool.transaction() as conn:
                if not await maintenance_store.try_maintenance_lock(conn):
                    return total
                shortest = await maintenance_store.shortest_retention(
                    conn, state=state, default_seconds=default_seconds
                )
                deleted = await maintenance_store.purge_finished_batch(
                    conn,
                    state=state,
                    cutoff=datetime.now(UTC) - timedelta(seconds=shortest),
                    default_seconds=default_seconds,
                    limit=options.purge_batch,
                )
            total += deleted
            if deleted < options.purge_batch:
                break
            await trio.lowlevel.checkpoint()  # let other tasks in between batches
    if total:
        log.info(
            "purged %d finished job(s) past retention",
            total,
            extra={"action": "queue.purged", "count": total},
        )
    return total


class Maintenance:
    """Runs rescue and retention passes until asked to stop (a Service)."""

    name = "maintenance"

    def __init__(
        self, pool: Pool, options: MaintenanceOptions, metrics: QueueMetrics | None = None
    ) -> None:
        self.pool = pool
        self.options = options
        self.metrics = metrics
        self._stop = trio.Event()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        next_retention = trio.current_time()
        while not self._stop.is_set():
            try:
                while (
                    await rescue_expired(self.pool, self.options.rescue_batch, self.metrics)
                    >= self.options.rescue_batch
                ):
                    pass
                if trio.current_time() >= next_retention:
                    next_retention = trio.current_time() + self.options.retention_interval
                    await purge_finished(self.pool, self.options)
            except (psycopg.Error, DatabaseError) as exc:
                log.warning(
                    "maintenance pass failed: %s", exc, extra={"action": "queue.maintenance_failed"}
                )
            with trio.move_on_after(self.options.rescue_interval):
                await self._stop.wait()
