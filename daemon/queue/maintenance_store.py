"""The queue maintenance's statements: lease rescue and finished-job retention.

See :mod:`daemon.queue.admin_store` for which modules hold queue SQL. Each function
takes a connection and runs in the caller's transaction; none commits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.queue.store import SQL, dead_letter, notify_queues

if TYPE_CHECKING:
    from datetime import datetime

    from daemon.shared.db.psycopg_trio import TrioConnection


async def try_maintenance_lock(conn: TrioConnection) -> bool:
    """Take the transaction-level maintenance lock if free: one process works at a time."""
    row = await (await conn.execute(SQL["try_maintenance_lock"])).fetchone()
    return bool(row and row[0])


async def rescue_expired_jobs(conn: TrioConnection, limit: int) -> list[tuple[int, str, str, int]]:
    """Move up to ``limit`` active jobs whose lease expired to ``retry`` (or ``failed`` on
    their last attempt), dead-letter the failed ones, and notify the queues of the
    retried ones at commit; (id, queue, new state, attempts) of each job rescued."""
    rows = await (await conn.execute(SQL["rescue_expired"], {"limit": limit})).fetchall()
    rescued = [(row[0], row[1], row[2], row[3]) for row in rows]
    await dead_letter(conn, [job_id for job_id, _q, state, _a in rescued if state == "failed"])
    retried = sorted({queue for _id, queue, state, _a in rescued if state == "retry"})
    if retried:  # wake the workers of those queues now, not at their next due scan
        await notify_queues(conn, retried)
    return rescued


async def shortest_retention(conn: TrioConnection, *, state: str, default_seconds: float) -> float:
    """The shortest retention (seconds) in force for finished jobs of ``state``."""
    params = {"state": state, "default_seconds": default_seconds}
    row = await (await conn.execute(SQL["shortest_retention"], params)).fetchone()
    return float(row[0]) if row and row[0] is not None else default_seconds


async def purge_finished_batch(
    conn: TrioConnection, *, state: str, cutoff: datetime, default_seconds: float, limit: int
) -> int:
    """Delete one batch of at most ``limit`` finished jobs of ``state`` past their queue's
    retention (none finished after ``cutoff``); the number deleted."""
    params = {
        "state": state,
        "cutoff": cutoff,
        "default_seconds": default_seconds,
        "limit": limit,
    }
    # Not prepared: a generic plan cannot see the cutoff and may scan the table.
    cursor = await conn.execute(SQL["purge_finished"], params, prepare=False)
    return cursor.rowcount
