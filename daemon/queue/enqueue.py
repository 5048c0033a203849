"""Putting jobs on queues, inside the caller's transaction.

Both functions take the caller's connection and run in its transaction: a job is
committed atomically with the business write that caused it, or not at all. Workers
are woken by a NOTIFY that PostgreSQL delivers only at commit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from daemon.queue import enqueue_store
from daemon.queue.jobs import Backoff, Enqueued, JobSpec, JsonObject, QueueError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from daemon.shared.db.psycopg_trio import TrioConnection

_DEDUP_RACE_TRIES = 3


async def enqueue(
    conn: TrioConnection,
    queue: str,
    payload: JsonObject | None = None,
    *,
    priority: int = 0,
    run_at: datetime | None = None,
    delay: float | None = None,
    max_attempts: int | None = None,
    backoff: Backoff | None = None,
    timeout: float | None = None,
    dedup_key: str | None = None,
) -> Enqueued:
    """Enqueue one job; with ``dedup_key``, a live job (created, retry or active) with the
    same key in the same queue is returned instead (``created=False``).

    ``delay`` (seconds from now) and ``run_at`` are exclusive. Does not commit.

    Raises:
        ValueError: an invalid option.
    """
    if delay is not None:
        if run_at is not None:
            raise ValueError("give run_at or delay, not both")
        run_at = datetime.now(UTC) + timedelta(seconds=delay)
    spec = JobSpec(
        queue=queue,
        payload=payload or {},
        priority=priority,
        run_at=run_at,
        max_attempts=max_attempts,
        backoff=backoff,
        timeout=timeout,
        dedup_key=dedup_key,
    )
    for _ in range(_DEDUP_RACE_TRIES):
        result = await enqueue_store.insert_job(conn, spec)
        # None: the live job holding the key finished between the conflict and the lookup.
        if result is not None:
            return result
    raise QueueError(f"could not enqueue on {queue!r}: dedup key {dedup_key!r} kept changing")


async def enqueue_many(conn: TrioConnection, specs: Sequence[JobSpec]) -> list[int]:
    """Enqueue many jobs in one statement; the ids of the jobs created, in order.

    Jobs whose dedup key matches a live job are skipped (their id is not returned).
    Does not commit.
    """
    if not specs:
        return []
    return await enqueue_store.insert_jobs(conn, specs)
