"""Helpers of the queue's integration tests: job states by queue, a worker with fast
test options, the worker's LISTEN backend."""

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


# The listener's backend: its last statement was LISTEN. Only this test's database (the
# server may be shared with other tests).
LISTEN_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%' ORDER BY pid"
)


async def listen_backends(pool) -> list[int]:
    async with pool.connection() as conn:
        return [pid for (pid,) in await (await conn.execute(LISTEN_BACKENDS)).fetchall()]


async def wait_for_listen_backend(pool, *, other_than: int | None, timeout: float) -> int:
    """The pid of the worker's LISTEN backend, once there is one (not ``other_than``)."""
    with trio.fail_after(timeout):
        while True:
            pids = [pid for pid in await listen_backends(pool) if pid != other_than]
            if pids:
                assert len(pids) == 1, pids
                return pids[0]
            await trio.sleep(0.05)
