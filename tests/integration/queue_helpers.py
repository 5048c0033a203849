"""Helpers of the queue's integration tests: job states by queue, a worker with fast
test options."""

from __future__ import annotations

import trio

from daemon.queue import QueueWorker, WorkerOptions


async def job_states(pool, queue: str) -> dict[str, int]:
    """How many jobs of ``queue`` are in each state."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT state::text, count(*) FROM jobs WHERE queue = %s GROUP BY 1", (queue,)
            )
        ).fetchall()
    return {state: count for state, count in rows}


async def wait_for_states(pool, queue: str, expected: dict[str, int], timeout: float = 10) -> None:
    """Wait until ``queue``'s job states are ``expected``; fail after ``timeout`` s."""
    with trio.fail_after(timeout):
        while (states := await job_states(pool, queue)) != expected:
            await trio.sleep(0.02)
    assert states == expected


def fast_worker(pool, database_url, registry, **options) -> QueueWorker:
    """A worker with a 5 s lease and 0.2 s polls (``options`` override them)."""
    opts = {"lease_seconds": 5.0, "poll_interval": 0.2, "conninfo": database_url, **options}
    return QueueWorker(pool, registry, WorkerOptions(**opts))
