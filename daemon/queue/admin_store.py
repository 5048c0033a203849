"""The operators' statements on the job tables (reads, cancel, retry, pause, policy).

With :mod:`daemon.queue.store` (the workers' and enqueuers' statements) and
:mod:`daemon.queue.maintenance_store`, the only code running SQL on ``jobs`` and
``queues``; the queries are named in ``queries.sql``. Each function takes a connection
and runs in the caller's transaction; none commits. Decisions (what a missing row
means, which error to raise) are :mod:`daemon.queue.admin`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg import sql

from daemon.queue.store import SQL, notify_queues

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.shared.db.psycopg_trio import TrioConnection


async def select_job(conn: TrioConnection, job_id: int) -> tuple[Any, ...] | None:
    """The job's row as ``get_job`` selects it; None when there is none."""
    return await (await conn.execute(SQL["get_job"], {"id": job_id})).fetchone()


async def select_jobs(
    conn: TrioConnection,
    *,
    queue: str | None,
    state: str | None,
    before_id: int | None,
    limit: int,
) -> list[tuple[Any, ...]]:
    """Job rows, newest first, filtered as given (None: any)."""
    cursor = await conn.execute(
        SQL["list_jobs"],
        {"queue": queue, "state": state, "before_id": before_id, "limit": limit},
    )
    return await cursor.fetchall()


async def cancel_live_job(conn: TrioConnection, job_id: int) -> str | None:
    """Cancel the job if it is live; the state it was in, None when it was not cancelled
    (unknown id or already finished)."""
    row = await (await conn.execute(SQL["admin_cancel_job"], {"id": job_id})).fetchone()
    return None if row is None else str(row[0])


async def retry_finished_job(conn: TrioConnection, job_id: int) -> bool:
    """Put a failed or cancelled job back to ``created`` with fresh attempts and notify
    its queue's workers at commit; False when no row changed (unknown id, another state,
    or its dedup key is held).

    Raises:
        psycopg.errors.UniqueViolation: a live job with its dedup key was enqueued
            concurrently (the caller's transaction is then aborted).
    """
    row = await (await conn.execute(SQL["admin_retry_job"], {"id": job_id})).fetchone()
    if row is None:
        return False
    await notify_queues(conn, [row[1]])
    return True


async def job_state(conn: TrioConnection, job_id: int) -> str | None:
    """The job's state; None when there is no such job."""
    row = await (await conn.execute(SQL["job_state"], {"id": job_id})).fetchone()
    return None if row is None else str(row[0])


async def set_paused(conn: TrioConnection, queue: str, paused: bool) -> None:
    """Set the queue's ``paused`` flag (creating its policy row); resuming notifies its
    workers at commit."""
    await conn.execute(SQL["set_paused"], {"queue": queue, "paused": paused})
    if not paused:
        await notify_queues(conn, [queue])


async def upsert_policy(
    conn: TrioConnection, queue: str, fields: Mapping[str, Any]
) -> tuple[Any, ...]:
    """Create or update the queue's policy row with ``fields`` (column -> value, columns
    already checked by the caller); the policy row as stored."""
    columns = [sql.Identifier(key) for key in fields]
    query = sql.SQL(SQL["configure_queue"]).format(
        columns=sql.SQL("").join(sql.SQL(", {}").format(c) for c in columns),
        values=sql.SQL("").join(sql.SQL(", {}").format(sql.Placeholder(key)) for key in fields),
        updates=sql.SQL("").join(sql.SQL(", {} = excluded.{}").format(c, c) for c in columns),
    )
    row = await (await conn.execute(query, {"name": queue, **fields})).fetchone()
    assert row is not None  # an upsert always returns its row
    return row


async def queue_stats_rows(conn: TrioConnection) -> list[tuple[Any, ...]]:
    """One row per queue with jobs or a policy row (a full scan of ``jobs``)."""
    return await (await conn.execute(SQL["queue_stats"])).fetchall()
