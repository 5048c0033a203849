"""The LISTEN connection lost while jobs wait, on a real PostgreSQL.

The server terminates the worker's LISTEN connection and refuses it for a while: jobs
enqueued meanwhile still run, found by the due scan within the poll interval; once the
server accepts connections again the listener is back (a new LISTEN backend), a NOTIFY
wakes the worker again well before a scan would, and no job is left waiting.
"""

from __future__ import annotations

import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from daemon.queue import HandlerRegistry, Job, enqueue
from daemon.shared.db.psycopg_trio import TrioConnection
from tests.integration.queue_helpers import (
    fast_worker,
    job_states,
    listen_backends,
    wait_for_listen_backend,
    wait_for_states,
)

POLL_INTERVAL = 5.0
# A NOTIFY wakes the fetcher in milliseconds; this leaves room for a loaded machine and
# stays well under the poll interval (the due scan runs once per interval).
PROMPT = 1.5


async def set_allow_connections(admin_url: str, database_url: str, allow: bool) -> None:
    """Let new connections into the test's database, or refuse them (superusers too);
    connections already open stay. Done from another database, as PostgreSQL requires."""
    dbname = conninfo_to_dict(database_url)["dbname"]
    async with await TrioConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(dbname), sql.SQL("true" if allow else "false")
            )
        )


async def warm_pool(pool, connections: int) -> None:
    """Open ``connections`` pool connections at once, so that the pool need open none
    while the database refuses new ones."""
    async with trio.open_nursery() as nursery:
        ready = trio.Semaphore(0)
        release = trio.Event()

        async def hold() -> None:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
                await conn.rollback()
                ready.release()
                await release.wait()

        for _ in range(connections):
            nursery.start_soon(hold)
        for _ in range(connections):
            await ready.acquire()
        release.set()


async def test_lost_listen_connection_falls_back_to_polling_and_reconnects(
    pool, database_url, pg_admin_url
):
    started: dict[int, float] = {}

    async def handler(job: Job):
        started[job.payload["n"]] = trio.current_time()

    registry = HandlerRegistry()
    registry.register("relisten", handler, concurrency=4)
    worker = fast_worker(pool, database_url, registry, poll_interval=POLL_INTERVAL)
    enqueued: dict[int, float] = {}

    async def enqueue_job(n: int) -> None:
        async with pool.transaction() as conn:
            await enqueue(conn, "relisten", {"n": n})
        enqueued[n] = trio.current_time()

    async def wake_up_latency(n: int) -> float:
        """Enqueue job ``n`` and return how long the worker took to start it."""
        await enqueue_job(n)
        with trio.fail_after(2 * POLL_INTERVAL):
            while n not in started:
                await trio.sleep(0.005)
        return started[n] - enqueued[n]

    await warm_pool(pool, 6)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        first_pid = await wait_for_listen_backend(pool, other_than=None, timeout=10)

        # Listening: each job starts at once. Each enqueue follows the previous job's
        # claim, after which a fetcher not kicked would sleep until the next due scan.
        before = [await wake_up_latency(n) for n in range(3)]
        assert max(before) < PROMPT, before

        # The server ends the LISTEN connection and refuses it for now.
        await set_allow_connections(pg_admin_url, database_url, False)
        try:
            async with pool.connection() as conn:
                await conn.execute("SELECT pg_terminate_backend(%s)", (first_pid,))
            with trio.fail_after(10):
                while first_pid in await listen_backends(pool):
                    await trio.sleep(0.05)
            for n in range(3, 8):
                await enqueue_job(n)
            # No NOTIFY reaches the worker: the due scan finds the jobs.
            await wait_for_states(pool, "relisten", {"completed": 8}, timeout=3 * POLL_INTERVAL)
            assert await listen_backends(pool) == []  # they ran without a listener
            polled = [started[n] - enqueued[n] for n in range(3, 8)]
            assert max(polled) < POLL_INTERVAL + PROMPT, polled
        finally:
            await set_allow_connections(pg_admin_url, database_url, True)

        # The listener reconnects (with its backoff, at most 30 s apart; here the
        # refusal lasted less than a poll interval, so its next attempt is seconds away).
        second_pid = await wait_for_listen_backend(pool, other_than=first_pid, timeout=30)
        assert second_pid != first_pid
        # Let the reconnection's wake-up of every fetcher be spent, so that the next
        # claims follow enqueues only.
        await trio.sleep(0.2)
        after = [await wake_up_latency(n) for n in range(8, 11)]
        assert max(after) < PROMPT, after
        worker.request_stop()

    assert await job_states(pool, "relisten") == {"completed": 11}
    assert sorted(started) == list(range(11))
