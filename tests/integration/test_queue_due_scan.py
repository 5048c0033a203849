"""The due scan: idle fetchers do not poll; one statement per interval wakes those with work."""

from __future__ import annotations

import collections

import trio

from daemon.queue import HandlerRegistry, Job, enqueue, pause_queue, store
from daemon.queue.due_scan import scan_for_due_jobs
from daemon.shared.db.pool import open_pool
from tests.integration.queue_helpers import fast_worker, job_states, wait_for_listen_backend

QUEUES = [f"idle-{i}" for i in range(8)]


async def wait_for_listener(pool) -> None:
    """Until the worker's LISTEN connection is up (and a moment for the claims its
    connect wakes)."""
    await wait_for_listen_backend(pool, other_than=None, timeout=10)
    await trio.sleep(0.2)


def count_claims(monkeypatch) -> collections.Counter[str]:
    """Claims per queue from here on (the real claim runs; this only counts it)."""
    claims: collections.Counter[str] = collections.Counter()
    real_claim = store.claim

    async def claim(conn, *, queue, **options):
        claims[queue] += 1
        return await real_claim(conn, queue=queue, **options)

    monkeypatch.setattr(store, "claim", claim)
    return claims


async def test_idle_queues_are_not_claimed_from_every_interval(pool, database_url, monkeypatch):
    claims = count_claims(monkeypatch)
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.queue)

    registry = HandlerRegistry()
    for queue in QUEUES:
        registry.register(queue, handler)
    interval = 0.1
    worker = fast_worker(pool, database_url, registry, poll_interval=interval)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await wait_for_listener(pool)  # its connect wakes every fetcher once
        await trio.sleep(20 * interval)
        # Each fetcher claimed at its start and when the listener connected; polling
        # fetchers would have claimed about 20 times each by now.
        assert set(claims) == set(QUEUES)
        assert max(claims.values()) <= 3, claims
        idle = claims.copy()
        # Nothing announces a delayed job when it comes due: the due scan finds it, and
        # wakes only its own queue's fetcher.
        async with pool.transaction() as conn:
            await enqueue(conn, QUEUES[0], delay=0.5)
        with trio.fail_after(5):
            while not ran:
                await trio.sleep(0.02)
        worker.request_stop()
    assert ran == [QUEUES[0]]
    woken = {q: claims[q] - idle[q] for q in QUEUES if claims[q] > idle[q]}
    assert set(woken) == {QUEUES[0]}, woken
    assert await job_states(pool, QUEUES[0]) == {"completed": 1}


async def test_a_paused_queue_with_due_jobs_is_not_claimed_from_by_the_scan(
    pool, database_url, monkeypatch
):
    async def handler(job: Job) -> None:
        raise AssertionError("a paused queue's job ran")

    registry = HandlerRegistry()
    registry.register("held", handler)
    async with pool.transaction() as conn:
        await pause_queue(conn, "held")
        await enqueue(conn, "held")
    claims = count_claims(monkeypatch)
    worker = fast_worker(pool, database_url, registry, poll_interval=0.1)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await wait_for_listener(pool)
        await trio.sleep(2.0)
        worker.request_stop()
    assert 1 <= claims["held"] <= 3, claims  # its start and the listener's connect
    assert await job_states(pool, "held") == {"created": 1}


async def test_the_scan_names_only_queues_with_a_job_due(pool):
    async with pool.transaction() as conn:
        await enqueue(conn, "due-now")
        await enqueue(conn, "due-later", delay=3600)
        await enqueue(conn, "paused-due")
        await pause_queue(conn, "paused-due")
    asked = ["due-now", "due-later", "paused-due", "empty"]
    async with pool.transaction() as conn:
        assert await store.due_queues(conn, asked) == ["due-now"]
        assert await store.due_queues(conn, []) == []


async def test_a_failed_scan_wakes_every_fetcher(database_url, caplog):
    woken: list[str] = []
    async with open_pool(database_url, name="closed") as closed:
        pass  # closed: every borrow fails with PoolClosed
    async with trio.open_nursery() as nursery:
        nursery.start_soon(scan_for_due_jobs, closed, ["a", "b"], 0.05, woken.append)
        with trio.fail_after(10):
            while len(woken) < 4:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    # Each fetcher then claims, fails, logs and backs off on its own.
    assert woken[:4] == ["a", "b", "a", "b"]
    failed = [r for r in caplog.records if getattr(r, "action", None) == "queue.due_scan_failed"]
    assert len(failed) == 1  # once, not at every interval
