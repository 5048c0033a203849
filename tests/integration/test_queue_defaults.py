"""One definition of the enqueue defaults: every way into the queue (Python's enqueue,
enqueue_many by INSERT and by COPY, SQL's enqueue_jobs()) gives a job the same default
max_attempts and wakes listening workers on the same channel, both defined once in the
database (queue_default_max_attempts(), queue_notify_channel())."""

from __future__ import annotations

import trio

from daemon.queue import HandlerRegistry, JobSpec, configure_queue, enqueue, enqueue_many
from tests.integration.queue_helpers import fast_worker, wait_for_states


async def _max_attempts(pool, queue: str) -> set[int]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT DISTINCT max_attempts FROM jobs WHERE queue = %s", (queue,))
        ).fetchall()
    return {row[0] for row in rows}


async def _enqueue_every_way(pool, queue: str) -> None:
    async with pool.transaction() as conn:
        await enqueue(conn, queue, {"way": "one"})
        await enqueue(conn, queue, {"way": "one-dedup"}, dedup_key="k")
        await enqueue_many(conn, [JobSpec(queue=queue, payload={"way": "few"})] * 3)
        await enqueue_many(conn, [JobSpec(queue=queue, payload={"way": "copy"})] * 300)
        await enqueue_many(
            conn,
            [JobSpec(queue=queue, payload={"way": "array"}, dedup_key=f"d{i}") for i in (1, 2)],
        )
        await conn.execute('SELECT enqueue_jobs(%s, \'[{"way": "sql"}]\'::jsonb)', (queue,))


async def test_every_enqueue_path_takes_the_one_default_and_the_queues_policy(pool):
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT queue_default_max_attempts()")).fetchone()
        await conn.rollback()
    default = row[0]
    await _enqueue_every_way(pool, "plain")
    assert await _max_attempts(pool, "plain") == {default}

    async with pool.transaction() as conn:
        await configure_queue(conn, "configured", max_attempts=default + 2)
    await _enqueue_every_way(pool, "configured")
    assert await _max_attempts(pool, "configured") == {default + 2}

    # A policy row created without max_attempts gets the one default too.
    async with pool.transaction() as conn:
        policy = await configure_queue(conn, "fresh", global_concurrency=3)
    assert policy.max_attempts == default


async def test_sql_enqueues_wake_a_listening_worker_on_the_one_channel(pool, database_url):
    done = trio.Event()

    async def handler(job) -> None:
        done.set()

    registry = HandlerRegistry()
    registry.register("woken", handler)
    # Polls once a minute: only the NOTIFY can start the job within the bound below.
    worker = fast_worker(pool, database_url, registry, poll_interval=60.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await trio.sleep(0.5)  # the LISTEN connection is up and its first poll is done
        async with pool.transaction() as conn:
            await conn.execute("SELECT enqueue_jobs('woken', '[{}]'::jsonb)")
        with trio.fail_after(20):
            await done.wait()
        await wait_for_states(pool, "woken", {"completed": 1}, timeout=20)
        worker.request_stop()
