"""The queue's SQL for enqueuers and workers, as typed functions.

The job tables are known only to the queue's stores: this one (claim, outcomes, leases,
notifications), :mod:`daemon.queue.enqueue_store` (inserts),
:mod:`daemon.queue.admin_store` (operators), :mod:`daemon.queue.maintenance_store`
(rescue, retention) and :mod:`daemon.queue.schedule_store` (schedules). ``SQL`` (the
named queries of ``queries.sql``) is loaded here once and used by them only.

Each function takes a connection and runs in whatever transaction the caller holds,
unless it says otherwise; none commits on the caller's behalf.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.types.json import Jsonb

from daemon.queue.jobs import (
    DEFAULT_BACKOFF_BASE_SECONDS,
    DEFAULT_BACKOFF_MAX_SECONDS,
    Backoff,
    Job,
)
from daemon.shared.db.queries import load_queries

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from daemon.shared.db.psycopg_trio import TrioConnection

SQL = load_queries("daemon.queue", "queries.sql")


@dataclass(frozen=True)
class QueuePolicy:
    paused: bool = False
    global_concurrency: int | None = None
    max_attempts: int | None = None
    backoff_base_seconds: float = DEFAULT_BACKOFF_BASE_SECONDS
    backoff_max_seconds: float = DEFAULT_BACKOFF_MAX_SECONDS
    timeout_seconds: float | None = None
    dead_letter_queue: str | None = None
    retain_completed_seconds: float | None = None
    retain_failed_seconds: float | None = None


async def notify_channel(conn: TrioConnection) -> sql.Identifier:
    """The channel enqueues NOTIFY, as defined once in the database (migration 0007)."""
    row = await (await conn.execute(SQL["notify_channel"])).fetchone()
    assert row is not None
    return sql.Identifier(row[0])


async def notify_queues(conn: TrioConnection, queues: Sequence[str]) -> None:
    """Wake the workers of ``queues`` when the transaction commits."""
    await conn.execute(SQL["notify_queues"], {"queues": sorted(set(queues))})


async def claim(
    conn: TrioConnection,
    *,
    queue: str,
    limit: int,
    token: UUID,
    lease_seconds: float,
    worker: str,
    policy: QueuePolicy,
) -> list[Job]:
    """Claim up to ``limit`` due jobs of ``queue``; commits (it owns its transaction).

    A queue with a global cap serializes its claims with a transaction-level advisory
    lock so that the active count the cap is checked against is current.
    """
    params = {
        "queue": queue,
        "limit": limit,
        "token": token,
        "lease": lease_seconds,
        "worker": worker,
    }
    if policy.global_concurrency is not None:
        async with conn.transaction():
            await conn.execute(SQL["lock_queue_claims"], params)
            rows = await (await conn.execute(SQL["claim"], params)).fetchall()
    else:
        rows = await (await conn.execute(SQL["claim"], params)).fetchall()
        if not conn.autocommit:
            await conn.commit()
    return [_job_from_row(queue, token, policy, row) for row in rows]


async def due_queues(conn: TrioConnection, queues: Sequence[str]) -> list[str]:
    """Those of ``queues`` that are not paused and have a job due now (a snapshot)."""
    cur = await conn.execute(SQL["due_queues"], {"queues": list(queues)})
    return [name for (name,) in await cur.fetchall()]


def _job_from_row(queue: str, token: UUID, policy: QueuePolicy, row: Sequence[Any]) -> Job:
    (
        job_id,
        payload,
        priority,
        attempts,
        max_attempts,
        timeout,
        backoff_base,
        backoff_max,
        created_at,
        run_at,
        started_at,
    ) = row
    return Job(
        id=job_id,
        queue=queue,
        payload=payload,
        priority=priority,
        attempt=attempts,
        max_attempts=max_attempts,
        timeout=timeout if timeout is not None else policy.timeout_seconds,
        backoff=Backoff(
            base_seconds=backoff_base if backoff_base is not None else policy.backoff_base_seconds,
            max_seconds=backoff_max if backoff_max is not None else policy.backoff_max_seconds,
        ),
        created_at=created_at,
        run_at=run_at,
        started_at=started_at,
        lease_token=token,
    )


async def queue_policy(conn: TrioConnection, queue: str) -> QueuePolicy:
    row = await (await conn.execute(SQL["queue_policy"], {"queue": queue})).fetchone()
    if row is None:
        return QueuePolicy()
    return QueuePolicy(*row)


async def ensure_queue(conn: TrioConnection, queue: str) -> None:
    await conn.execute(SQL["ensure_queue"], {"queue": queue})


async def complete_jobs(
    conn: TrioConnection, items: Sequence[tuple[int, UUID, str | None]]
) -> set[int]:
    """Mark jobs completed with their results (JSON text, already encoded and checked by
    :func:`encode_result`); the ids whose lease was still held."""
    if not items:
        return set()
    cursor = await conn.execute(
        SQL["complete_jobs"],
        {
            "ids": [i[0] for i in items],
            "rows": Jsonb([{"id": i[0], "token": str(i[1]), "result": i[2]} for i in items]),
        },
    )
    return {row[0] for row in await cursor.fetchall()}


def encode_result(result: Any) -> str | None:
    """A handler's return value as JSON text PostgreSQL can store (None for None).

    Raises:
        ValueError: it is not JSON-serializable, or holds a NUL character (which
            PostgreSQL's jsonb refuses).
    """
    if result is None:
        return None
    try:
        text = json.dumps(result, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the result is not JSON: {exc}") from None
    if "\\u0000" in text:
        raise ValueError("the result contains a NUL character, which PostgreSQL cannot store")
    return text


def clean_error(error: str) -> str:
    """An error message PostgreSQL can store: NUL bytes replaced, at most 4,000 characters."""
    return error.replace("\x00", "\\x00")[:4000]


async def fail_job(
    conn: TrioConnection,
    *,
    job_id: int,
    token: UUID,
    error: str,
    delay: float,
    permanent: bool,
) -> str | None:
    """Record a failed attempt; the new state ('retry' or 'failed'), None if fenced out."""
    cursor = await conn.execute(
        SQL["fail_job"],
        {
            "id": job_id,
            "token": token,
            "error": clean_error(error),
            "delay": delay,
            "permanent": permanent,
        },
    )
    row = await cursor.fetchone()
    return None if row is None else str(row[0])


async def snooze_job(conn: TrioConnection, *, job_id: int, token: UUID, delay: float) -> bool:
    cursor = await conn.execute(SQL["snooze_job"], {"id": job_id, "token": token, "delay": delay})
    return await cursor.fetchone() is not None


async def release_jobs(
    conn: TrioConnection, items: Sequence[tuple[int, UUID]]
) -> list[tuple[int, str]]:
    """Give claimed jobs back without spending an attempt; (id, queue) of those released."""
    if not items:
        return []
    cursor = await conn.execute(
        SQL["release_jobs"], {"ids": [i[0] for i in items], "tokens": [i[1] for i in items]}
    )
    released = [(row[0], row[1]) for row in await cursor.fetchall()]
    if released:
        await conn.execute(SQL["notify_queues"], {"queues": sorted({q for _, q in released})})
    return released


async def renew_leases(
    conn: TrioConnection, items: Sequence[tuple[int, UUID]], lease_seconds: float
) -> set[tuple[int, UUID]]:
    """Extend the leases of running jobs; the (id, token) pairs whose lease was still held."""
    if not items:
        return set()
    cursor = await conn.execute(
        SQL["renew_leases"],
        {"ids": [i[0] for i in items], "tokens": [i[1] for i in items], "lease": lease_seconds},
    )
    return {(row[0], row[1]) for row in await cursor.fetchall()}


async def dead_letter(conn: TrioConnection, failed_ids: Sequence[int]) -> list[tuple[int, str]]:
    """Copy failed jobs into their queue's dead-letter queue, if it has one."""
    if not failed_ids:
        return []
    cursor = await conn.execute(SQL["dead_letter"], {"ids": list(failed_ids)})
    rows = [(row[0], row[1]) for row in await cursor.fetchall()]
    if rows:
        await conn.execute(SQL["notify_queues"], {"queues": sorted({q for _, q in rows})})
    return rows
