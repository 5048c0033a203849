"""The queue engine on a real PostgreSQL: enqueue, claim, outcomes, drain, rescue."""

from __future__ import annotations

import trio

from daemon.queue import (
    Backoff,
    HandlerRegistry,
    Job,
    JobSpec,
    PermanentFailure,
    QueueWorker,
    RetryLater,
    WorkerOptions,
    enqueue,
    enqueue_many,
    store,
)
from daemon.queue.maintenance import rescue_expired
from daemon.shared.errors import DatabaseError
from tests.integration.queue_helpers import fast_worker, job_states, wait_for_states


async def test_jobs_run_once_and_complete_with_their_result(pool, database_url):
    seen: list[int] = []

    async def handler(job: Job):
        seen.append(job.payload["n"])
        return {"double": job.payload["n"] * 2}

    registry = HandlerRegistry()
    registry.register("basic", handler, concurrency=4)
    async with pool.transaction() as conn:
        await enqueue_many(conn, [JobSpec(queue="basic", payload={"n": i}) for i in range(50)])
    worker = fast_worker(pool, database_url, registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await wait_for_states(pool, "basic", {"completed": 50})
        worker.request_stop()
    assert sorted(seen) == list(range(50))
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT result, attempts FROM jobs WHERE payload->>'n' = '7'")
        ).fetchone()
    assert row == ({"double": 14}, 1)


async def test_enqueue_is_atomic_with_the_callers_transaction(pool):
    class Abort(Exception):
        pass

    try:
        async with pool.transaction() as conn:
            await enqueue(conn, "atomic", {"x": 1})
            raise Abort
    except Abort:
        pass
    assert await job_states(pool, "atomic") == {}


async def test_dedup_key_returns_the_live_job(pool):
    async with pool.transaction() as conn:
        first = await enqueue(conn, "dedup", {"a": 1}, dedup_key="k")
        second = await enqueue(conn, "dedup", {"a": 2}, dedup_key="k")
        other = await enqueue(conn, "dedup", {"a": 3}, dedup_key="other")
    assert first.created and not second.created and second.id == first.id
    assert other.created and other.id != first.id


async def test_failures_retry_with_backoff_then_fail(pool, database_url):
    attempts: list[int] = []

    async def handler(job: Job):
        attempts.append(job.attempt)
        raise RuntimeError("boom")

    registry = HandlerRegistry()
    registry.register("flaky", handler)
    async with pool.transaction() as conn:
        await enqueue(
            conn, "flaky", max_attempts=3, backoff=Backoff(base_seconds=0.01, max_seconds=0.05)
        )
    worker = fast_worker(pool, database_url, registry, poll_interval=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await wait_for_states(pool, "flaky", {"failed": 1})
        worker.request_stop()
    assert attempts == [1, 2, 3]
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT last_error, attempts FROM jobs")).fetchone()
    assert row == ("RuntimeError: boom", 3)


async def test_retry_later_gives_the_attempt_back_and_permanent_failure_skips_retries(
    pool, database_url
):
    calls: list[str] = []

    async def snoozer(job: Job):
        calls.append(f"s{job.attempt}")
        if len([c for c in calls if c.startswith("s")]) < 3:
            raise RetryLater(0.01)
        return "done"

    async def doomed(job: Job):
        calls.append("d")
        raise PermanentFailure("unsupported content")

    registry = HandlerRegistry()
    registry.register("snooze", snoozer)
    registry.register("doomed", doomed)
    async with pool.transaction() as conn:
        await enqueue(conn, "snooze", max_attempts=1)
        await enqueue(conn, "doomed", max_attempts=5)
    worker = fast_worker(pool, database_url, registry, poll_interval=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await wait_for_states(pool, "snooze", {"completed": 1})
        await wait_for_states(pool, "doomed", {"failed": 1})
        worker.request_stop()
    assert [c for c in calls if c.startswith("s")] == ["s1", "s1", "s1"]
    assert calls.count("d") == 1


async def test_timeout_cancels_the_handler_and_counts_as_a_failure(pool, database_url):
    cancelled: list[bool] = []

    async def slow(job: Job):
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            cancelled.append(True)
            raise

    registry = HandlerRegistry()
    registry.register("slow", slow)
    async with pool.transaction() as conn:
        await enqueue(conn, "slow", timeout=0.2, max_attempts=1)
    worker = fast_worker(pool, database_url, registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await wait_for_states(pool, "slow", {"failed": 1})
        worker.request_stop()
    assert cancelled == [True]
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT last_error FROM jobs")).fetchone()
    assert row == ("timed out after 0.2s",)


async def test_cancelled_drain_releases_running_jobs_without_spending_an_attempt(
    pool, database_url
):
    started = trio.Event()

    async def stuck(job: Job):
        started.set()
        await trio.sleep(60)

    registry = HandlerRegistry()
    registry.register("stuck", stuck, concurrency=2)
    async with pool.transaction() as conn:
        await enqueue_many(conn, [JobSpec(queue="stuck") for _ in range(3)])
    worker = fast_worker(pool, database_url, registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await started.wait()
        await wait_for_states(pool, "stuck", {"active": 2, "created": 1})
        worker.request_stop()
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()  # the supervisor's job grace deadline
    assert await job_states(pool, "stuck") == {"created": 3}
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT attempts, lease_token FROM jobs")).fetchall()
    assert rows == [(0, None)] * 3


async def test_expired_lease_is_rescued_and_the_old_worker_cannot_complete_it(pool, database_url):
    release = trio.Event()
    runs: list[int] = []

    async def handler(job: Job):
        runs.append(job.attempt)
        if job.attempt == 1:
            await release.wait()  # a hung worker: holds the job, stops renewing
        return job.attempt

    registry = HandlerRegistry()
    registry.register("lease", handler)
    async with pool.transaction() as conn:
        job = await enqueue(conn, "lease", max_attempts=3)
    # lease 1 s, heartbeat every ~0.33 s: simulate a hang by never renewing
    worker = fast_worker(pool, database_url, registry, lease_seconds=1.0)
    worker._heartbeat = trio.sleep_forever  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await wait_for_states(pool, "lease", {"active": 1})
        await trio.sleep(1.2)
        assert await rescue_expired(pool) == 1
        await wait_for_states(pool, "lease", {"completed": 1})  # attempt 2 ran and completed
        release.set()  # the hung attempt 1 returns late: its outcome must be dropped
        await trio.sleep(0.3)
        worker.request_stop()
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT state::text, result, attempts FROM jobs WHERE id = %s", (job.id,)
            )
        ).fetchone()
    assert row == ("completed", 2, 2)
    assert runs == [1, 2]


async def test_global_concurrency_caps_active_jobs_across_workers(pool, database_url):
    active = 0
    peak = 0

    async def handler(job: Job):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await trio.sleep(0.05)
        active -= 1

    async with pool.transaction() as conn:
        await conn.execute("INSERT INTO queues (name, global_concurrency) VALUES ('capped', 3)")
        await enqueue_many(conn, [JobSpec(queue="capped") for _ in range(30)])
    workers = []
    for _ in range(3):
        registry = HandlerRegistry()
        registry.register("capped", handler, concurrency=5)
        workers.append(fast_worker(pool, database_url, registry, poll_interval=0.02))
    async with trio.open_nursery() as nursery:
        for worker in workers:
            await nursery.start(worker.run)
        await wait_for_states(pool, "capped", {"completed": 30}, timeout=20)
        for worker in workers:
            worker.request_stop()
    assert peak == 3


async def test_wake_up_by_notify_is_fast(pool, database_url):
    started_at: list[float] = []

    async def handler(job: Job):
        started_at.append(trio.current_time())

    registry = HandlerRegistry()
    registry.register("wake", handler)
    worker = fast_worker(pool, database_url, registry, poll_interval=30)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await trio.sleep(0.3)  # LISTEN is up, the fetcher is asleep
        latencies = []
        for _ in range(20):
            async with pool.transaction() as conn:
                await enqueue(conn, "wake")
            committed = trio.current_time()
            with trio.fail_after(2):
                while len(started_at) < len(latencies) + 1:
                    await trio.sleep(0.0005)
            latencies.append(started_at[-1] - committed)
        worker.request_stop()
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.2, latencies  # NOTIFY, not the 30 s poll


async def test_drain_releases_jobs_whose_handler_runs_a_nursery(pool, database_url):
    started = trio.Event()

    async def with_nursery(job: Job):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 60)
            started.set()

    registry = HandlerRegistry()
    registry.register("nursery", with_nursery)
    async with pool.transaction() as conn:
        await enqueue(conn, "nursery")
    worker = fast_worker(pool, database_url, registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await started.wait()
        worker.request_stop()
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()  # the job grace deadline
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT state::text, attempts FROM jobs")).fetchall()
    assert rows == [("created", 0)]


async def test_retry_later_and_permanent_failure_raised_inside_a_nursery_keep_their_meaning(
    pool, database_url
):
    calls: list[str] = []

    async def snooze_in_nursery(job: Job):
        calls.append("s")
        if calls.count("s") == 1:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep, 0)
                raise RetryLater(0.01)
        return "ok"

    async def doom_in_nursery(job: Job):
        async with trio.open_nursery():
            raise PermanentFailure("corrupt file")

    registry = HandlerRegistry()
    registry.register("n-snooze", snooze_in_nursery)
    registry.register("n-doom", doom_in_nursery)
    async with pool.transaction() as conn:
        await enqueue(conn, "n-snooze", max_attempts=1)
        await enqueue(conn, "n-doom", max_attempts=5)
    worker = fast_worker(pool, database_url, registry, poll_interval=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await wait_for_states(pool, "n-snooze", {"completed": 1})
        await wait_for_states(pool, "n-doom", {"failed": 1})
        worker.request_stop()
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT attempts, last_error FROM jobs WHERE queue = 'n-doom'")
        ).fetchone()
    assert row == (1, "permanent failure: corrupt file")


async def test_polling_only_mode_runs_jobs_without_listen(pool, database_url):
    done = trio.Event()

    async def handler(job: Job):
        done.set()

    registry = HandlerRegistry()
    registry.register("polled", handler)
    worker = QueueWorker(
        pool, registry, WorkerOptions(listen=False, poll_interval=0.1, conninfo=None)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await trio.sleep(0.2)
        async with pool.transaction() as conn:
            await enqueue(conn, "polled")
        with trio.fail_after(2):
            await done.wait()
        worker.request_stop()
    assert await job_states(pool, "polled") == {"completed": 1}


async def test_handler_is_cancelled_when_its_lease_cannot_be_renewed(pool, database_url):
    cancelled = trio.Event()

    async def handler(job: Job):
        try:
            await trio.sleep(30)
        except trio.Cancelled:
            cancelled.set()
            raise

    registry = HandlerRegistry()
    registry.register("stale", handler)
    async with pool.transaction() as conn:
        await enqueue(conn, "stale")
    worker = fast_worker(pool, database_url, registry, lease_seconds=1.5)

    async def renewals_fail(*args, **kwargs):
        raise DatabaseError("the database is away")

    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await wait_for_states(pool, "stale", {"active": 1})
        original = store.renew_leases
        store.renew_leases = renewals_fail
        try:
            with trio.fail_after(3):  # 0.8 of the lease after the last renewal, at most
                await cancelled.wait()
        finally:
            store.renew_leases = original
        worker.request_stop()


async def test_enqueue_jobs_from_sql_in_the_callers_statement(pool, database_url):
    seen: list[int] = []

    async def handler(job: Job):
        seen.append(job.payload["n"])

    registry = HandlerRegistry()
    registry.register("from_sql", handler)
    worker = fast_worker(pool, database_url, registry, poll_interval=30.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)  # idle: only a NOTIFY can wake it within 30 s
        async with pool.transaction() as conn:
            await conn.execute(
                "INSERT INTO queues (name, max_attempts) VALUES ('from_sql', 7) "
                "ON CONFLICT (name) DO UPDATE SET max_attempts = 7"
            )
            created = await (
                await conn.execute(
                    "SELECT enqueue_jobs('from_sql', %s::jsonb), "
                    "enqueue_jobs('from_sql', NULL), enqueue_jobs('from_sql', '[]'), "
                    "enqueue_jobs('from_sql', '[{\"n\": 9}]', 2)",
                    ('[{"n": 1}, {"n": 2}, {"n": 3}]',),
                )
            ).fetchone()
        assert created == (3, 0, 0, 1)
        await wait_for_states(pool, "from_sql", {"completed": 4}, timeout=5)
        worker.request_stop()
    assert sorted(seen) == [1, 2, 3, 9]
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT payload->>'n', max_attempts FROM jobs WHERE queue = 'from_sql' ORDER BY id"
            )
        ).fetchall()
    assert rows == [("1", 7), ("2", 7), ("3", 7), ("9", 2)]  # in order; the queue's policy
