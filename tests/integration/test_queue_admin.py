"""Operating the queue on a real PostgreSQL: the admin functions, cancel of a running job,
dead-letter copies, retention, and bulk enqueue storing exactly what it was given."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
import trio

from daemon.queue import (
    Backoff,
    HandlerRegistry,
    InvalidJobState,
    Job,
    JobNotFound,
    JobSpec,
    JobState,
    QueuePolicy,
    cancel_job,
    configure_queue,
    enqueue,
    enqueue_many,
    get_job,
    list_jobs,
    pause_queue,
    queue_stats,
    resume_queue,
    retry_job,
)
from daemon.queue.maintenance import MaintenanceOptions, purge_finished
from daemon.queue.store import SQL
from tests.integration.queue_helpers import fast_worker


async def _state(pool, job_id: int) -> JobState:
    async with pool.connection() as conn:
        return (await get_job(conn, job_id)).state


async def _wait_state(pool, job_id: int, state: JobState, timeout: float = 5) -> None:
    with trio.fail_after(timeout):
        while await _state(pool, job_id) != state:
            await trio.sleep(0.02)


async def _set_state(
    pool, job_id: int, state: str, *, finished_ago: float | None = None, error: str | None = None
) -> None:
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE jobs SET state = %s::job_state, last_error = %s, "
            "finished_at = now() - make_interval(secs => %s) WHERE id = %s",
            (state, error, finished_ago, job_id),
        )


# -- get / list --------------------------------------------------------------------------


async def test_get_job_returns_the_row_and_unknown_ids_raise(pool):
    async with pool.transaction() as conn:
        enqueued = await enqueue(
            conn,
            "mail",
            {"to": "a@example.org"},
            priority=3,
            max_attempts=2,
            timeout=9.5,
            dedup_key="a",
        )
    async with pool.connection() as conn:
        job = await get_job(conn, enqueued.id)
        with pytest.raises(JobNotFound, match=f"job {enqueued.id + 1000} not found"):
            await get_job(conn, enqueued.id + 1000)
    assert (job.id, job.queue, job.state, job.payload, job.priority) == (
        enqueued.id,
        "mail",
        JobState.CREATED,
        {"to": "a@example.org"},
        3,
    )
    assert (job.attempts, job.max_attempts, job.timeout_seconds, job.dedup_key) == (0, 2, 9.5, "a")
    assert job.finished_at is None and job.started_at is None and job.worker is None
    assert job.run_at.tzinfo is not None


async def test_list_jobs_filters_and_pages_by_id(pool):
    async with pool.transaction() as conn:
        a_ids = await enqueue_many(conn, [JobSpec(queue="a", payload={"n": i}) for i in range(7)])
        b_ids = await enqueue_many(conn, [JobSpec(queue="b") for _ in range(3)])
    await _set_state(pool, a_ids[2], "failed", finished_ago=0)
    async with pool.connection() as conn:
        everything = (await list_jobs(conn, limit=1000)).items
        assert [j.id for j in everything] == sorted(a_ids + b_ids, reverse=True)

        pages, cursor = [], None
        for _ in range(20):  # a cursor that never ends fails instead of looping forever
            page = await list_jobs(conn, queue="a", limit=3, cursor=cursor)
            pages.append([j.id for j in page.items])
            if (cursor := page.next_cursor) is None:
                break
        else:
            raise AssertionError(f"pagination did not end after 20 pages: {pages}")
        assert pages == [a_ids[6:3:-1], a_ids[3:0:-1], a_ids[0:1]]

        failed = (await list_jobs(conn, state="failed")).items
        assert [(j.id, j.state) for j in failed] == [(a_ids[2], JobState.FAILED)]
        assert (await list_jobs(conn, queue="b", state=JobState.FAILED)).items == []
        assert [j.id for j in (await list_jobs(conn, queue="b", state="created")).items] == b_ids[
            ::-1
        ]
        with pytest.raises(ValueError, match="limit"):
            await list_jobs(conn, limit=0)
        with pytest.raises(ValueError, match="limit"):
            await list_jobs(conn, limit=1001)
        with pytest.raises(ValueError, match="'done'"):
            await list_jobs(conn, state="done")


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_waiting_jobs_and_refuse_finished_or_unknown_ones(pool):
    async with pool.transaction() as conn:
        created, retrying, done = await enqueue_many(conn, [JobSpec(queue="c")] * 3)
    await _set_state(pool, retrying, "retry")
    await _set_state(pool, done, "completed", finished_ago=0)
    async with pool.transaction() as conn:
        assert await cancel_job(conn, created) is JobState.CREATED
        assert await cancel_job(conn, retrying) is JobState.RETRY
    for job_id in (created, retrying):
        async with pool.connection() as conn:
            job = await get_job(conn, job_id)
        assert job.state is JobState.CANCELLED and job.finished_at is not None
    for job_id, state in ((done, "completed"), (created, "cancelled")):
        async with pool.transaction() as conn:
            with pytest.raises(InvalidJobState, match=f"job {job_id} is {state}"):
                await cancel_job(conn, job_id)
    async with pool.transaction() as conn:
        with pytest.raises(JobNotFound):
            await cancel_job(conn, done + 100)


async def test_cancelling_a_running_job_cancels_its_handler_at_the_next_heartbeat(
    pool, database_url
):
    started = trio.Event()
    handler_cancelled = trio.Event()
    runs = 0

    async def handler(job: Job):
        nonlocal runs
        runs += 1
        started.set()
        try:
            await trio.sleep(30)
        except trio.Cancelled:
            handler_cancelled.set()
            raise

    registry = HandlerRegistry()
    registry.register("long", handler)
    async with pool.transaction() as conn:
        job = await enqueue(conn, "long")
    # lease 3 s: a heartbeat every 1 s
    worker = fast_worker(pool, database_url, registry, lease_seconds=3.0, poll_interval=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await started.wait()
        assert await _state(pool, job.id) is JobState.ACTIVE
        async with pool.transaction() as conn:
            assert await cancel_job(conn, job.id) is JobState.ACTIVE
        cancelled_at = trio.current_time()
        with trio.fail_after(5):
            await handler_cancelled.wait()
        assert trio.current_time() - cancelled_at < 2.0  # at the next heartbeat (1 s), loosely
        await trio.sleep(0.3)  # the worker keeps scanning: it must not pick the job again
        worker.request_stop()
    async with pool.connection() as conn:
        record = await get_job(conn, job.id)
    assert record.state is JobState.CANCELLED
    assert record.attempts == 1 and runs == 1
    assert worker.metrics.finished.get("long", "lost") == 1


async def test_an_outcome_reported_after_a_cancel_is_dropped(pool, database_url):
    started = trio.Event()
    go_on = trio.Event()
    returned = trio.Event()

    async def handler(job: Job):
        started.set()
        await go_on.wait()  # returns normally, before any heartbeat notices the cancel
        returned.set()
        return {"sent": True}

    registry = HandlerRegistry()
    registry.register("quick", handler)
    async with pool.transaction() as conn:
        job = await enqueue(conn, "quick")
    worker = fast_worker(pool, database_url, registry, lease_seconds=30.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await started.wait()
        async with pool.transaction() as conn:
            await cancel_job(conn, job.id)
        go_on.set()
        await returned.wait()
        worker.request_stop()  # run() returns once the completer has written the outcome
    async with pool.connection() as conn:
        record = await get_job(conn, job.id)
    assert (record.state, record.result) == (JobState.CANCELLED, None)
    assert worker.metrics.finished.get("quick", "lost") == 1
    assert worker.metrics.finished.get("quick", "completed") == 0


# -- retry -------------------------------------------------------------------------------


async def test_retry_runs_failed_and_cancelled_jobs_again_with_fresh_attempts(pool, database_url):
    seen: list[tuple[int, int]] = []

    async def handler(job: Job):
        seen.append((job.id, job.attempt))

    async with pool.transaction() as conn:
        failed, cancelled, waiting = await enqueue_many(
            conn, [JobSpec(queue="again", max_attempts=2)] * 3
        )
        await conn.execute("UPDATE jobs SET attempts = 2 WHERE id = %s", (failed,))
    await _set_state(pool, failed, "failed", finished_ago=0, error="boom")
    await _set_state(pool, cancelled, "cancelled", finished_ago=0)
    async with pool.transaction() as conn:
        await cancel_job(conn, waiting)  # three finished jobs now
        await retry_job(conn, failed)
        await retry_job(conn, cancelled)
    for job_id in (failed, cancelled):
        async with pool.connection() as conn:
            job = await get_job(conn, job_id)
        assert (job.state, job.attempts, job.finished_at) == (JobState.CREATED, 0, None)
    async with pool.connection() as conn:
        assert (await get_job(conn, failed)).last_error == "boom"  # kept for the record

    registry = HandlerRegistry()
    registry.register("again", handler)
    worker = fast_worker(pool, database_url, registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await _wait_state(pool, failed, JobState.COMPLETED)
        await _wait_state(pool, cancelled, JobState.COMPLETED)
        worker.request_stop()
    assert sorted(seen) == [(failed, 1), (cancelled, 1)]
    assert await _state(pool, waiting) is JobState.CANCELLED


async def test_retry_refuses_live_completed_unknown_and_dedup_held_jobs(pool):
    async with pool.transaction() as conn:
        live = await enqueue(conn, "r")
        done = await enqueue(conn, "r")
        old = await enqueue(conn, "r", dedup_key="k")
    await _set_state(pool, done.id, "completed", finished_ago=0)
    await _set_state(pool, old.id, "failed", finished_ago=0)
    async with pool.transaction() as conn:
        holder = await enqueue(conn, "r", dedup_key="k")  # the key is live again
    assert holder.created
    async with pool.transaction() as conn:
        with pytest.raises(InvalidJobState, match="is created: only failed or cancelled"):
            await retry_job(conn, live.id)
        with pytest.raises(InvalidJobState, match="is completed"):
            await retry_job(conn, done.id)
        with pytest.raises(JobNotFound):
            await retry_job(conn, holder.id + 100)
        with pytest.raises(InvalidJobState, match="dedup key"):
            await retry_job(conn, old.id)
        # Refusals leave the caller's transaction usable.
        await (await conn.execute("SELECT 1")).fetchone()
    assert await _state(pool, old.id) is JobState.FAILED


# -- pause / resume / configure ------------------------------------------------------------


async def test_a_paused_queue_is_not_claimed_and_resume_wakes_the_worker(pool, database_url):
    ran: list[int] = []

    async def handler(job: Job):
        ran.append(job.id)

    registry = HandlerRegistry()
    registry.register("p", handler)
    worker = fast_worker(pool, database_url, registry, poll_interval=30)  # NOTIFY or nothing
    async with pool.transaction() as conn:
        await pause_queue(conn, "p")
        await pause_queue(conn, "p")  # idempotent
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        async with pool.transaction() as conn:
            job = await enqueue(conn, "p")  # its NOTIFY wakes the fetcher: paused, no claim
        await trio.sleep(0.3)
        assert ran == [] and await _state(pool, job.id) is JobState.CREATED
        async with pool.transaction() as conn:
            await resume_queue(conn, "p")
        resumed_at = trio.current_time()
        await _wait_state(pool, job.id, JobState.COMPLETED, timeout=3)
        assert trio.current_time() - resumed_at < 2  # woken, not the 30 s poll
        worker.request_stop()
    assert ran == [job.id]
    async with pool.connection() as conn:
        with pytest.raises(ValueError, match="invalid queue name"):
            await pause_queue(conn, "no spaces")


async def test_configure_queue_upserts_only_the_given_fields(pool):
    async with pool.transaction() as conn:
        first = await configure_queue(
            conn,
            "cfg",
            global_concurrency=4,
            max_attempts=7,
            timeout_seconds=12.5,
            dead_letter_queue="cfg.dead",
        )
        assert first == QueuePolicy(
            global_concurrency=4, max_attempts=7, timeout_seconds=12.5, dead_letter_queue="cfg.dead"
        )
        second = await configure_queue(
            conn, "cfg", backoff_base_seconds=0.5, retain_completed_seconds=60
        )
        assert second == QueuePolicy(
            global_concurrency=4,
            max_attempts=7,
            backoff_base_seconds=0.5,
            timeout_seconds=12.5,
            dead_letter_queue="cfg.dead",
            retain_completed_seconds=60.0,
        )
        cleared = await configure_queue(
            conn, "cfg", global_concurrency=None, timeout_seconds=None, dead_letter_queue=None
        )
        assert (
            cleared.global_concurrency,
            cleared.timeout_seconds,
            cleared.dead_letter_queue,
            cleared.max_attempts,
        ) == (None, None, None, 7)
        assert await configure_queue(conn, "plain") == QueuePolicy(max_attempts=5)
        # The queue's max_attempts is the default of jobs enqueued from now on.
        job = await enqueue(conn, "cfg")
        assert (await get_job(conn, job.id)).max_attempts == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"global_concurrency": 0}, "global_concurrency"),
        ({"global_concurrency": True}, "global_concurrency"),
        ({"max_attempts": None}, "max_attempts"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"backoff_base_seconds": -1}, "backoff_base_seconds"),
        ({"backoff_max_seconds": math.inf}, "backoff_max_seconds"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"dead_letter_queue": "bad name"}, "invalid queue name"),
        ({"dead_letter_queue": "newline\n"}, "invalid queue name"),
        ({"dead_letter_queue": "q"}, "its own dead-letter queue"),
        ({"retain_failed_seconds": -5}, "retain_failed_seconds"),
        ({"retain_completed_seconds": math.nan}, "retain_completed_seconds"),
    ],
)
async def test_configure_queue_rejects_invalid_values_before_writing(pool, kwargs, message):
    async with pool.transaction() as conn:
        before = await queue_stats(conn)  # the migrations' own queues (ingestion)
        with pytest.raises(ValueError, match=message):
            await configure_queue(conn, "q", **kwargs)
        assert await queue_stats(conn) == before


async def test_queue_stats_counts_states_and_lists_configured_queues_without_jobs(pool):
    async with pool.connection() as conn:  # the queues the migrations configure
        migrated = {
            name for (name,) in await (await conn.execute("SELECT name FROM queues")).fetchall()
        }
    async with pool.transaction() as conn:
        await configure_queue(conn, "idle", global_concurrency=2, retain_failed_seconds=30)
        await pause_queue(conn, "busy")
        ids = await enqueue_many(conn, [JobSpec(queue="busy") for _ in range(6)])
        await enqueue(conn, "later", delay=3600)
        await conn.execute(
            "UPDATE jobs SET run_at = now() - interval '90 seconds' WHERE id = %s", (ids[0],)
        )
    for job_id, state in zip(ids[1:], ["retry", "completed", "cancelled", "failed"], strict=False):
        await _set_state(pool, job_id, state, finished_ago=0)
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE jobs SET state = 'active', lease_token = gen_random_uuid(),"
            " lease_expires_at = now() + interval '1 minute' WHERE id = %s",
            (ids[5],),
        )
    async with pool.connection() as conn:
        # Leave out the queues the migrations configure (the pipeline's, sources', ...).
        stats = {s.name: s for s in await queue_stats(conn) if s.name not in migrated}
    assert list(stats) == ["busy", "idle", "later"]
    busy = stats["busy"]
    assert [busy.count(s) for s in JobState] == [1, 1, 1, 1, 1, 1]
    assert busy.total == 6
    assert busy.paused and busy.configured
    assert 89 < busy.oldest_available_seconds < 120
    idle = stats["idle"]
    assert (idle.total, idle.paused, idle.oldest_available_seconds) == (0, False, None)
    assert idle.policy == QueuePolicy(
        global_concurrency=2, max_attempts=5, retain_failed_seconds=30.0
    )
    later = stats["later"]
    assert (later.created, later.configured, later.oldest_available_seconds) == (1, False, None)
    assert later.policy == QueuePolicy(max_attempts=5)  # the defaults


# -- dead letters and retention ------------------------------------------------------------


async def test_jobs_that_exhaust_their_attempts_are_copied_to_the_dead_letter_queue(
    pool, database_url
):
    async def handler(job: Job):
        if job.payload["ok"]:
            return "fine"
        raise RuntimeError(f"cannot deliver {job.payload['to']}")

    async with pool.transaction() as conn:
        await configure_queue(
            conn, "send", dead_letter_queue="send.dead", max_attempts=2, backoff_base_seconds=0.0
        )
        await configure_queue(conn, "send.dead", max_attempts=9)
        doomed = await enqueue(conn, "send", {"ok": False, "to": "x@example.org"})
        fine = await enqueue(conn, "send", {"ok": True, "to": "y@example.org"})
    registry = HandlerRegistry()
    registry.register("send", handler)
    worker = fast_worker(pool, database_url, registry, poll_interval=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await _wait_state(pool, doomed.id, JobState.FAILED)
        await _wait_state(pool, fine.id, JobState.COMPLETED)
        worker.request_stop()
    async with pool.connection() as conn:
        dead = (await list_jobs(conn, queue="send.dead")).items
    assert len(dead) == 1
    copy = dead[0]
    assert copy.dead_letter_of == doomed.id
    assert (copy.state, copy.max_attempts) == (JobState.CREATED, 9)
    assert copy.payload == {
        "job_id": doomed.id,
        "queue": "send",
        "attempts": 2,
        "payload": {"ok": False, "to": "x@example.org"},
        "error": "RuntimeError: cannot deliver x@example.org",
    }


async def test_purge_deletes_only_finished_jobs_past_retention_with_queue_overrides(pool):
    hour = 3600.0
    async with pool.transaction() as conn:
        await configure_queue(
            conn, "short", retain_completed_seconds=60, retain_failed_seconds=10 * hour
        )
        a = await enqueue_many(conn, [JobSpec(queue="default")] * 7)
        b = await enqueue_many(conn, [JobSpec(queue="short")] * 4)
        await conn.execute(
            "UPDATE jobs SET created_at = now() - interval '30 days', "
            "run_at = now() - interval '30 days'"
        )
    cases = {  # job id: (state, finished this long ago, expected to survive)
        a[0]: ("completed", 2 * hour, False),
        a[1]: ("completed", 0.5 * hour, True),
        a[2]: ("failed", 3 * hour, False),
        a[3]: ("failed", 1 * hour, True),
        a[4]: ("cancelled", 3 * hour, False),
        a[5]: ("created", None, True),  # live jobs are never purged, however old
        a[6]: ("retry", None, True),
        b[0]: ("completed", 600, False),  # the queue keeps completed jobs 60 s only
        b[1]: ("completed", 30, True),
        b[2]: ("failed", 3 * hour, True),  # ... and failed ones 10 h
        b[3]: ("cancelled", 11 * hour, False),
    }
    for job_id, (state, ago, _) in cases.items():
        if ago is not None:
            await _set_state(pool, job_id, state, finished_ago=ago)
        else:
            await _set_state(pool, job_id, state)
    options = MaintenanceOptions(
        retain_completed_seconds=hour, retain_failed_seconds=2 * hour, purge_batch=2
    )  # several batches per state
    deleted = await purge_finished(pool, options)
    async with pool.connection() as conn:
        left = {j.id for j in (await list_jobs(conn, limit=100)).items}
    assert left == {job_id for job_id, (_, _, keep) in cases.items() if keep}
    assert deleted == sum(1 for _, _, keep in cases.values() if not keep)
    assert await purge_finished(pool, options) == 0


# -- bulk enqueue stores what it was given (the COPY path formats rows by hand) ------------


async def test_bulk_enqueue_round_trips_payloads_and_options_exactly(pool):
    run_at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    payloads = [
        {},
        {"text": "tab\there, newline\nthere, cr\r, backslash \\ and \\n literally"},
        {"quotes": "\"double\" 'single'", "unicode": "é 漢字 🚀 \u2028", "nul-ish": "\\u0000"},
        {"nested": {"list": [1, 2.5, None, True, {"deep": ["\\", "\t"]}]}, "n": -7},
        MappingProxyType({"read": "only mapping"}),
    ]
    specs = [
        JobSpec(queue="bulk:a.b-c", payload=payloads[0]),
        JobSpec(queue="bulk:a.b-c", payload=payloads[1], priority=-3, run_at=run_at),
        JobSpec(
            queue="other",
            payload=payloads[2],
            max_attempts=11,
            backoff=Backoff(base_seconds=0.25, max_seconds=math.inf),
        ),
        JobSpec(
            queue="other",
            payload=payloads[3],
            timeout=0.5,
            backoff=Backoff(base_seconds=2.0, max_seconds=30.0),
        ),
        JobSpec(queue="bulk:a.b-c", payload=payloads[4], priority=2**31 - 1),
    ]
    async with pool.transaction() as conn:
        await configure_queue(conn, "other", max_attempts=4)
        before = await (await conn.execute("SELECT now()")).fetchone()
        ids = await enqueue_many(conn, specs)
    assert ids == sorted(ids) and len(set(ids)) == len(specs)
    async with pool.connection() as conn:
        jobs = [await get_job(conn, job_id) for job_id in ids]
        rows = await (
            await conn.execute(
                "SELECT backoff_base_seconds, backoff_max_seconds FROM jobs ORDER BY id"
            )
        ).fetchall()
    assert [j.payload for j in jobs] == [dict(p) for p in payloads]
    assert [j.queue for j in jobs] == [s.queue for s in specs]
    assert [j.priority for j in jobs] == [0, -3, 0, 0, 2**31 - 1]
    assert [j.max_attempts for j in jobs] == [5, 5, 11, 4, 5]
    assert [j.timeout_seconds for j in jobs] == [None, None, None, 0.5, None]
    assert rows == [(None, None), (None, None), (0.25, math.inf), (2.0, 30.0), (None, None)]
    assert jobs[1].run_at == run_at
    # Jobs without run_at are due at the enqueueing transaction's now().
    assert jobs[0].run_at == jobs[0].created_at == before[0]
    assert all(j.state is JobState.CREATED for j in jobs)


async def test_oldest_available_age_counts_only_jobs_that_are_due(pool):
    now = datetime.now(UTC)
    async with pool.transaction() as conn:
        await enqueue_many(
            conn,
            [
                JobSpec(queue="due", run_at=now - timedelta(hours=1)),
                JobSpec(queue="due", run_at=now + timedelta(hours=1)),
            ],
        )
        stats = {s.name: s for s in await queue_stats(conn)}
    assert stats["due"].created == 2
    assert 3500 < stats["due"].oldest_available_seconds < 3700  # only the past job is due


# -- the claim's commit ---------------------------------------------------------------------


async def test_a_claim_commits_without_waiting_for_its_wal_flush(pool):
    """A claim lost in a crash only makes its jobs claimable again, so the claim statement
    turns synchronous_commit off for its own transaction (the one that claimed rows)."""
    async with pool.transaction() as conn:
        await enqueue(conn, "fast")
    async with pool.transaction() as conn:
        assert (await (await conn.execute("SHOW synchronous_commit")).fetchone())[0] == "on"
        rows = await (
            await conn.execute(
                SQL["claim"],
                {
                    "queue": "fast",
                    "limit": 5,
                    "token": uuid.uuid4(),
                    "lease": 30.0,
                    "worker": "test",
                },
            )
        ).fetchall()
        assert len(rows) == 1
        assert (await (await conn.execute("SHOW synchronous_commit")).fetchone())[0] == "off"
    async with pool.connection() as conn:  # the next transaction is durable again
        assert (await (await conn.execute("SHOW synchronous_commit")).fetchone())[0] == "on"
