"""Batch handlers on a real PostgreSQL: sizes and concurrency, per-job outcomes, a raising
handler, timeouts, lost leases, drain, and registration."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
import trio

from daemon.queue import (
    HandlerRegistry,
    Job,
    JobSpec,
    JobState,
    PermanentFailure,
    RetryLater,
    cancel_job,
    enqueue,
    enqueue_many,
    pause_queue,
    store,
)
from tests.integration.queue_helpers import fast_worker, job_states, wait_for_states


async def _jobs(pool, queue: str) -> dict[int, dict]:
    """The queue's jobs by id: state, attempts, last_error, result, lease_token, and
    run_in (seconds from now to run_at)."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT id, state::text, attempts, last_error, result, lease_token,"
                " extract(epoch FROM run_at - now())::float8"
                " FROM jobs WHERE queue = %s ORDER BY id",
                (queue,),
            )
        ).fetchall()
    keys = ("state", "attempts", "last_error", "result", "lease_token", "run_in")
    return {row[0]: dict(zip(keys, row[1:], strict=True)) for row in rows}


async def _pause(pool, queue: str) -> None:
    """Stop further claims of ``queue`` (called from a handler: the jobs of the batch
    that is running keep their first attempt's outcome, nothing is claimed again)."""
    async with pool.transaction() as conn:
        await pause_queue(conn, queue)


def test_batch_handler_type_is_exported():
    from daemon.queue import BatchHandler

    assert BatchHandler is not None


async def test_batches_run_every_job_once_within_batch_size_and_concurrency(pool, database_url):
    queue = "batch-bulk"
    batches: list[list[int]] = []
    queues_seen: set[str] = set()
    calls: Counter[int] = Counter()
    in_flight = 0
    peak = 0

    async def handler(jobs: Sequence[Job]):
        nonlocal in_flight, peak
        batches.append([job.id for job in jobs])
        queues_seen.update(job.queue for job in jobs)
        calls.update(job.id for job in jobs)
        in_flight += len(jobs)
        peak = max(peak, in_flight)
        try:
            await trio.sleep(0.05)
            return {job.id: {"n": job.payload["n"], "id": job.id} for job in jobs}
        finally:
            in_flight -= len(jobs)

    registry = HandlerRegistry()
    registry.register_batch(queue, handler, batch_size=25, concurrency=50)
    async with pool.transaction() as conn:
        ids = await enqueue_many(conn, [JobSpec(queue=queue, payload={"n": i}) for i in range(200)])
    worker = fast_worker(pool, database_url, registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await wait_for_states(pool, queue, {"completed": 200})
        worker.request_stop()

    assert queues_seen == {queue}
    assert sorted(calls) == sorted(ids)
    assert set(calls.values()) == {1}, "a job was handed to the batch handler twice"
    assert all(len(batch) == len(set(batch)) for batch in batches), "a job twice in a batch"
    sizes = [len(batch) for batch in batches]
    assert max(sizes) <= 25, sizes
    assert min(sizes) >= 1, sizes
    assert max(sizes) > 1, f"all 200 jobs were waiting, yet every batch had one job: {sizes}"
    assert peak <= 50, f"{peak} jobs in handlers at once, concurrency is 50"
    # 50 free slots and 200 due jobs: the first claim takes 50 and starts them as two
    # batches of at most 25, which run side by side.
    assert peak > 25, f"at most {peak} jobs ran at once: batches of the queue did not overlap"
    rows = await _jobs(pool, queue)
    n_of = {job_id: n for n, job_id in enumerate(ids)}
    for job_id, row in rows.items():
        assert (row["state"], row["attempts"]) == ("completed", 1), (job_id, row)
        assert row["result"] == {"n": n_of[job_id], "id": job_id}, (job_id, row)


async def test_each_job_of_a_batch_gets_its_own_outcome(pool, database_url):
    queue = "batch-outcomes"
    batches: list[list[int]] = []

    called = trio.Event()

    async def handler(jobs: Sequence[Job]):
        batches.append([job.id for job in jobs])
        await _pause(pool, queue)
        called.set()
        outcomes: dict[int, object] = {}
        for job in jobs:
            kind = job.payload["kind"]
            if kind == "ok":
                outcomes[job.id] = {"kind": "ok", "id": job.id}
            elif kind == "permanent":
                outcomes[job.id] = PermanentFailure("unsupported format")
            elif kind == "later":
                outcomes[job.id] = RetryLater(60, "upstream not ready")
            elif kind == "error":
                outcomes[job.id] = ValueError("bad input")
            # "missing": no entry at all
        return outcomes

    kinds = ["ok", "permanent", "later", "error", "missing"]
    registry = HandlerRegistry()
    registry.register_batch(queue, handler, batch_size=5, concurrency=5)
    async with pool.transaction() as conn:
        ids = await enqueue_many(
            conn, [JobSpec(queue=queue, payload={"kind": k}, max_attempts=3) for k in kinds]
        )
    worker = fast_worker(pool, database_url, registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        with trio.fail_after(3):
            await called.wait()
            while "active" in await job_states(pool, queue):  # the outcomes are not written yet
                await trio.sleep(0.02)
        worker.request_stop()

    assert batches == [ids], "the five jobs were not handed over as one batch"
    assert await job_states(pool, queue) == {"completed": 1, "failed": 1, "created": 1, "retry": 2}
    rows = await _jobs(pool, queue)
    job = dict(zip(kinds, ids, strict=True))

    ok = rows[job["ok"]]
    assert (ok["state"], ok["attempts"]) == ("completed", 1)
    assert ok["result"] == {"kind": "ok", "id": job["ok"]}

    permanent = rows[job["permanent"]]
    assert (permanent["state"], permanent["attempts"]) == ("failed", 1)
    assert permanent["last_error"] == "permanent failure: unsupported format"
    assert permanent["result"] is None

    later = rows[job["later"]]
    assert (later["state"], later["attempts"]) == ("created", 0), (
        "RetryLater gives the attempt back"
    )
    assert 50 < later["run_in"] <= 60, later  # snoozed for the 60 s it asked for
    assert later["lease_token"] is None

    error = rows[job["error"]]
    assert (error["state"], error["attempts"]) == ("retry", 1)
    assert error["last_error"] == "ValueError: bad input"

    missing = rows[job["missing"]]
    assert (missing["state"], missing["attempts"]) == ("retry", 1)
    assert "no outcome" in (missing["last_error"] or ""), missing["last_error"]
    assert missing["result"] is None


@pytest.mark.parametrize(
    ("make_error", "state", "attempts", "last_error"),
    [
        (lambda: RuntimeError("batch boom"), "retry", 1, "RuntimeError: batch boom"),
        (lambda: PermanentFailure("corrupt"), "failed", 1, "permanent failure: corrupt"),
        (lambda: RetryLater(60), "created", 0, None),
    ],
    ids=["other-error", "permanent-failure", "retry-later"],
)
async def test_a_raising_batch_handler_gives_every_job_of_the_batch_that_outcome(
    pool, database_url, make_error, state, attempts, last_error
):
    queue = "batch-raises"
    batches: list[list[int]] = []
    called = trio.Event()

    async def handler(jobs: Sequence[Job]):
        batches.append([job.id for job in jobs])
        await _pause(pool, queue)
        called.set()
        raise make_error()

    registry = HandlerRegistry()
    registry.register_batch(queue, handler, batch_size=3, concurrency=3)
    async with pool.transaction() as conn:
        ids = await enqueue_many(conn, [JobSpec(queue=queue, max_attempts=3) for _ in range(3)])
    worker = fast_worker(pool, database_url, registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        with trio.fail_after(3):
            await called.wait()  # the jobs are active now ('created' is also where they began)
        await wait_for_states(pool, queue, {state: 3})
        worker.request_stop()

    assert batches == [ids]
    rows = await _jobs(pool, queue)
    assert [(r["state"], r["attempts"], r["last_error"]) for r in rows.values()] == [
        (state, attempts, last_error)
    ] * 3


async def test_a_batch_times_out_at_the_earliest_timeout_of_its_jobs(pool, database_url):
    queue = "batch-timeout"
    batches: list[list[int]] = []
    cancelled_after: list[float] = []

    async def handler(jobs: Sequence[Job]):
        started = trio.current_time()
        batches.append([job.id for job in jobs])
        await _pause(pool, queue)
        try:
            await trio.sleep(30)
        except trio.Cancelled:
            cancelled_after.append(trio.current_time() - started)
            raise
        return {job.id: "too late" for job in jobs}

    registry = HandlerRegistry()
    registry.register_batch(queue, handler, batch_size=3, concurrency=3)
    async with pool.transaction() as conn:
        ids = [
            (await enqueue(conn, queue, {"i": i}, timeout=timeout, max_attempts=2)).id
            for i, timeout in enumerate([5.0, 0.3, None])
        ]
    worker = fast_worker(pool, database_url, registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await wait_for_states(pool, queue, {"retry": 3}, timeout=4)
        worker.request_stop()

    assert batches == [ids]
    assert len(cancelled_after) == 1, "the batch handler was not cancelled"
    assert cancelled_after[0] < 2.0, f"cancelled after {cancelled_after[0]:.2f}s, not at ~0.3s"
    rows = await _jobs(pool, queue)
    for job_id, row in rows.items():
        assert (row["state"], row["attempts"]) == ("retry", 1), (job_id, row)
        assert (row["last_error"] or "").startswith("timed out after"), (job_id, row)


async def test_cancelling_one_job_of_a_running_batch_drops_only_its_outcome(
    pool, database_url, monkeypatch
):
    queue = "batch-cancel-one"
    batches: list[list[int]] = []
    started = trio.Event()
    finish = trio.Event()
    handler_cancelled: list[bool] = []
    renewals: list[set[int]] = []  # the ids whose lease each heartbeat found still held
    renew_leases = store.renew_leases

    async def spy_renew_leases(*args, **kwargs):
        held = await renew_leases(*args, **kwargs)
        renewals.append({job_id for job_id, _ in held})
        return held

    monkeypatch.setattr(store, "renew_leases", spy_renew_leases)

    async def handler(jobs: Sequence[Job]):
        batches.append([job.id for job in jobs])
        started.set()
        try:
            await finish.wait()
        except trio.Cancelled:
            handler_cancelled.append(True)
            raise
        return {job.id: {"id": job.id} for job in jobs}

    def heartbeat_acted_on_the_loss(victim: int) -> bool:
        """A heartbeat found the victim's lease gone, and a later heartbeat began (the
        heartbeat is one loop: the first has then done whatever it does about it)."""
        lost = [i for i, held in enumerate(renewals) if victim not in held]
        return bool(lost) and len(renewals) > lost[0] + 1

    registry = HandlerRegistry()
    registry.register_batch(queue, handler, batch_size=3, concurrency=3)
    async with pool.transaction() as conn:
        ids = await enqueue_many(conn, [JobSpec(queue=queue) for _ in range(3)])
    victim = ids[1]
    worker = fast_worker(pool, database_url, registry, lease_seconds=0.6)  # heartbeat: 0.2 s
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        with trio.fail_after(3):
            await started.wait()
        async with pool.transaction() as conn:
            assert await cancel_job(conn, victim) == JobState.ACTIVE
        with trio.fail_after(3):
            while not heartbeat_acted_on_the_loss(victim):
                await trio.sleep(0.01)
        assert not handler_cancelled, "the batch was cancelled when one of its jobs was"
        finish.set()
        await wait_for_states(pool, queue, {"completed": 2, "cancelled": 1})
        worker.request_stop()

    assert batches == [ids]
    assert not handler_cancelled
    rows = await _jobs(pool, queue)
    assert (rows[victim]["state"], rows[victim]["result"]) == ("cancelled", None)
    for job_id in (ids[0], ids[2]):
        assert rows[job_id]["state"] == "completed", (job_id, rows[job_id])
        assert rows[job_id]["result"] == {"id": job_id}, (job_id, rows[job_id])


async def test_a_batch_whose_jobs_all_lose_their_lease_is_cancelled(pool, database_url):
    queue = "batch-cancel-all"
    batches: list[list[int]] = []
    started = trio.Event()
    cancelled = trio.Event()

    async def handler(jobs: Sequence[Job]):
        batches.append([job.id for job in jobs])
        if len(batches) > 1:
            return {job.id: "second batch" for job in jobs}
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    registry = HandlerRegistry()
    registry.register_batch(queue, handler, batch_size=2, concurrency=2)
    async with pool.transaction() as conn:
        first = await enqueue_many(conn, [JobSpec(queue=queue) for _ in range(2)])
    worker = fast_worker(pool, database_url, registry, lease_seconds=0.6)  # heartbeat: 0.2 s
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        with trio.fail_after(3):
            await started.wait()
        async with pool.transaction() as conn:
            for job_id in first:
                assert await cancel_job(conn, job_id) == JobState.ACTIVE
        with trio.fail_after(2):
            await cancelled.wait()
        # Its slots are free again: new jobs run.
        async with pool.transaction() as conn:
            second = await enqueue_many(conn, [JobSpec(queue=queue) for _ in range(2)])
        await wait_for_states(pool, queue, {"cancelled": 2, "completed": 2})
        worker.request_stop()

    assert batches[0] == first
    assert sorted(i for batch in batches[1:] for i in batch) == second
    rows = await _jobs(pool, queue)
    assert [rows[i]["result"] for i in first] == [None, None]
    assert [rows[i]["result"] for i in second] == ["second batch"] * 2


async def test_cancelled_drain_releases_every_job_of_running_batches(pool, database_url):
    queue = "batch-drain"
    in_handlers = 0
    all_started = trio.Event()
    cancelled: list[int] = []

    async def handler(jobs: Sequence[Job]):
        nonlocal in_handlers
        in_handlers += len(jobs)
        if in_handlers == 4:
            all_started.set()
        try:
            await trio.sleep(60)
        except trio.Cancelled:
            cancelled.extend(job.id for job in jobs)
            raise
        return {job.id: "never" for job in jobs}

    registry = HandlerRegistry()
    registry.register_batch(queue, handler, batch_size=2, concurrency=4)
    async with pool.transaction() as conn:
        ids = await enqueue_many(conn, [JobSpec(queue=queue) for _ in range(5)])
    worker = fast_worker(pool, database_url, registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        with trio.fail_after(3):
            await all_started.wait()
        await wait_for_states(pool, queue, {"active": 4, "created": 1})
        worker.request_stop()
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()  # the supervisor's job grace deadline

    assert len(cancelled) == 4 and set(cancelled) < set(ids)
    assert await job_states(pool, queue) == {"created": 5}
    rows = await _jobs(pool, queue)
    assert [(r["attempts"], r["lease_token"]) for r in rows.values()] == [(0, None)] * 5


async def test_plain_and_batch_queues_run_side_by_side(pool, database_url):
    async def single(job: Job):
        return {"single": job.payload["n"]}

    async def batch(jobs: Sequence[Job]):
        return {job.id: {"batch": job.payload["n"]} for job in jobs}

    registry = HandlerRegistry()
    registry.register("mixed-single", single, concurrency=3)
    registry.register_batch("mixed-batch", batch, batch_size=4)
    async with pool.transaction() as conn:
        await enqueue_many(
            conn,
            [
                JobSpec(queue=q, payload={"n": i})
                for q in ("mixed-single", "mixed-batch")
                for i in range(10)
            ],
        )
    worker = fast_worker(pool, database_url, registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        await wait_for_states(pool, "mixed-single", {"completed": 10})
        await wait_for_states(pool, "mixed-batch", {"completed": 10})
        worker.request_stop()
    async with pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT queue, payload->>'n', result FROM jobs ORDER BY id")
        ).fetchall()
    for queue, n, result in rows:
        key = "single" if queue == "mixed-single" else "batch"
        assert result == {key: int(n)}, (queue, n, result)


async def test_a_plain_handler_returning_an_exception_still_fails_as_not_json(pool, database_url):
    # register() keeps its behaviour exactly: only a batch handler's mapping may carry
    # Exception instances as outcomes; a plain handler's return value is its result, and
    # an exception object is not JSON.
    queue = "plain-returns-exception"

    called = trio.Event()

    async def handler(job: Job):
        await _pause(pool, queue)
        called.set()
        return PermanentFailure("returned, not raised")

    registry = HandlerRegistry()
    registry.register(queue, handler)
    async with pool.transaction() as conn:
        await enqueue(conn, queue, max_attempts=3)
    worker = fast_worker(pool, database_url, registry)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        with trio.fail_after(3):
            await called.wait()
            while await job_states(pool, queue) == {"active": 1}:
                await trio.sleep(0.02)
        worker.request_stop()
    [row] = (await _jobs(pool, queue)).values()
    assert (row["state"], row["attempts"]) == ("retry", 1), row
    assert (row["last_error"] or "").startswith("the result is not JSON"), row["last_error"]


def test_register_batch_refuses_a_batch_size_below_one_and_a_queue_registered_twice():
    async def batch(jobs: Sequence[Job]):
        return {}

    async def single(job: Job):
        return None

    registry = HandlerRegistry()
    for bad in (0, -1):
        with pytest.raises(ValueError):
            registry.register_batch("q", batch, batch_size=bad)
    registry.register_batch("q", batch, batch_size=1)  # the refusals registered nothing

    registry.register_batch("b", batch, batch_size=5, concurrency=10)
    with pytest.raises(ValueError):
        registry.register_batch("b", batch, batch_size=5)
    with pytest.raises(ValueError):
        registry.register("b", single)

    registry.register("s", single)
    with pytest.raises(ValueError):
        registry.register_batch("s", batch, batch_size=5)


def test_register_batch_refuses_a_concurrency_below_one():
    # Not spelled out for register_batch; register refuses it, and so should this.
    async def batch(jobs: Sequence[Job]):
        return {}

    registry = HandlerRegistry()
    with pytest.raises(ValueError):
        registry.register_batch("q", batch, batch_size=5, concurrency=0)
