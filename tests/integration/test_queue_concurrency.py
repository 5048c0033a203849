"""Several QueueWorkers on one database: no job is ever handed to two handlers at once;
one job's unwritable outcome does not stop the others'.

One Trio run, four workers (two on each of two pools, as two processes would have),
queue maintenance rescuing expired leases every 50 ms, and a few hundred jobs whose
handlers sleep at random, raise, ask to ``RetryLater``, or outlast their lease (so only
the heartbeat keeps them from being rescued and handed out again). Nothing crashes, so
the bookkeeping must be exact: each job ran once per attempt charged, completed jobs
succeeded exactly once, on their last call.
"""

from __future__ import annotations

import logging
import os
import random
from collections import defaultdict
from datetime import UTC, datetime

import pytest
import trio

from daemon.queue import (
    Backoff,
    HandlerRegistry,
    Job,
    JobSpec,
    Maintenance,
    MaintenanceOptions,
    QueueWorker,
    RetryLater,
    WorkerOptions,
    enqueue_many,
)
from daemon.shared.db import open_pool

QUEUE = "concurrency"
TOTAL = 300
MAX_ATTEMPTS = 5
LEASE_SECONDS = 1.5


async def test_no_job_is_handed_to_two_handlers_at_once(pool, database_url, caplog):
    seed = int(os.environ.get("TRIAGED_STRESS_SEED") or random.randrange(2**32))
    print(f"seed {seed}: replay with TRIAGED_STRESS_SEED={seed}")
    rng = random.Random(seed)
    caplog.set_level(logging.INFO, logger="triaged.queue")
    doomed = set(rng.sample(range(TOTAL), 10))  # every call raises: must end failed
    slow = set(rng.sample(range(TOTAL), 8))  # first call outlasts the lease

    running: dict[int, str] = {}  # job id -> the worker whose handler has it now
    double: list[str] = []
    calls: dict[int, list[tuple[int, str]]] = defaultdict(list)  # id -> (attempt, outcome)

    def handler_for(name: str):
        async def handler(job: Job) -> str:
            if job.id in running:
                double.append(f"job {job.id} handed to {name} while {running[job.id]} runs it")
            running[job.id] = name
            outcome = "cancelled"
            try:
                n = job.payload["n"]
                draw = rng.random()
                if n in slow and not calls[job.id]:
                    await trio.sleep(LEASE_SECONDS * 1.3)
                else:
                    await trio.sleep(rng.uniform(0, 0.02))
                if n in doomed or draw < 0.15:
                    outcome = "error"
                    raise RuntimeError("boom")
                if draw < 0.3:
                    outcome = "snoozed"
                    raise RetryLater(0.01)
                outcome = "ok"
                return name
            finally:
                calls[job.id].append((job.attempt, outcome))
                if running.get(job.id) == name:
                    del running[job.id]

        return handler

    async with pool.transaction() as conn:
        ids = await enqueue_many(
            conn,
            [
                JobSpec(
                    queue=QUEUE,
                    payload={"n": n},
                    max_attempts=MAX_ATTEMPTS,
                    backoff=Backoff(base_seconds=0.01, max_seconds=0.05),
                )
                for n in range(TOTAL)
            ],
        )
    doomed_ids = {ids[n] for n in doomed}

    async def states() -> dict[str, int]:
        async with pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT state::text, count(*) FROM jobs GROUP BY 1")
            ).fetchall()
        return dict(rows)

    async with open_pool(database_url, max_size=10) as second_pool:
        workers = []
        for i, worker_pool in enumerate([pool, pool, second_pool, second_pool]):
            registry = HandlerRegistry()
            registry.register(QUEUE, handler_for(f"w{i}"), concurrency=5)
            workers.append(
                QueueWorker(
                    worker_pool,
                    registry,
                    WorkerOptions(
                        lease_seconds=LEASE_SECONDS, poll_interval=0.05, conninfo=database_url
                    ),
                )
            )
        maintenance = Maintenance(pool, MaintenanceOptions(rescue_interval=0.05))
        async with trio.open_nursery() as nursery:
            await nursery.start(maintenance.run)
            for worker in workers:
                await nursery.start(worker.run)
            with trio.fail_after(8):
                while set(counts := await states()) - {"completed", "failed"}:
                    await trio.sleep(0.05)
            for worker in workers:
                worker.request_stop()
            maintenance.request_stop()

    async with pool.connection() as conn:
        jobs = {
            row[0]: row[1:]
            for row in await (
                await conn.execute("SELECT id, state::text, attempts, result FROM jobs")
            ).fetchall()
        }
    assert double == [], f"seed {seed}"
    assert sum(counts.values()) == TOTAL
    assert set(jobs) == set(ids)
    assert not running
    # The heartbeat kept the slow jobs' leases: nothing was rescued or lost.
    actions = {getattr(r, "action", None) for r in caplog.records}
    assert not actions & {"job.rescued", "job.lease_lost"}, f"seed {seed}"
    for job_id, (state, attempts, result) in jobs.items():
        job_calls = calls[job_id]
        where = f"job {job_id} (seed {seed}): {state}, {attempts} attempts, calls {job_calls}"
        outcomes = [outcome for _, outcome in job_calls]
        assert "cancelled" not in outcomes, where
        # An error spends an attempt, a RetryLater gives it back: each call saw the attempt
        # number 1 + the errors before it, and the job was charged exactly its errors and
        # its success.
        errors_before = 0
        for attempt, outcome in job_calls:
            assert attempt == errors_before + 1, where
            errors_before += outcome == "error"
        assert attempts == outcomes.count("error") + outcomes.count("ok") <= MAX_ATTEMPTS, where
        if state == "completed":
            assert outcomes.count("ok") == 1 and outcomes[-1] == "ok", where
            assert result in {"w0", "w1", "w2", "w3"}, where
            assert job_id not in doomed_ids, where
        else:
            assert state == "failed", where
            assert "ok" not in outcomes and attempts == MAX_ATTEMPTS, where
    assert doomed_ids <= {job_id for job_id, row in jobs.items() if row[0] == "failed"}


# -- poison outcomes ---------------------------------------------------------------------
# An outcome the database refuses (a NUL byte in an error message, which a handler parsing
# documents can easily produce, or in a JSON result) or cannot even be encoded (a result
# that is not JSON) is one job's problem: it must not stop the worker from recording the
# outcomes of every other job, nor crash the process.

POISONS = {
    "nul byte in the error message": "error",
    "nul byte in the result": "nul_result",
    "result that is not JSON": "datetime_result",
}


@pytest.mark.parametrize("poison", POISONS.values(), ids=POISONS.keys())
async def test_one_unwritable_outcome_does_not_stop_the_others(pool, database_url, poison):
    async def handler(job: Job):
        await trio.sleep(0.01)
        if job.payload["n"] != 0:
            return {"n": job.payload["n"]}
        if poison == "error":
            raise RuntimeError("cannot parse byte \x00 of the document")
        if poison == "nul_result":
            return {"text": "a\x00b"}
        return {"at": datetime.now(UTC)}

    registry = HandlerRegistry()
    registry.register("poison", handler, concurrency=4)
    async with pool.transaction() as conn:
        ids = await enqueue_many(
            conn, [JobSpec(queue="poison", payload={"n": n}, max_attempts=1) for n in range(20)]
        )
    worker = QueueWorker(
        pool, registry, WorkerOptions(lease_seconds=30, poll_interval=0.05, conninfo=database_url)
    )
    crashed: list[BaseException] = []

    async def run_worker(task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            await worker.run(task_status=task_status)
        except Exception as exc:
            crashed.append(exc)

    async def states() -> dict[int, str]:
        async with pool.connection() as conn:
            rows = await (await conn.execute("SELECT id, state::text FROM jobs")).fetchall()
        return dict(rows)

    async with trio.open_nursery() as nursery:
        await nursery.start(run_worker)
        with trio.move_on_after(3):
            while not crashed and set((await states()).values()) - {"completed", "failed"}:
                await trio.sleep(0.05)
        worker.request_stop()
        nursery.cancel_scope.deadline = trio.current_time() + 1

    final = await states()
    assert crashed == [], f"one job's result crashed the worker (so the process): {crashed!r}"
    others = {final[job_id] for job_id in ids[1:]}
    assert others == {"completed"}, f"the other jobs' outcomes were not recorded: {final}"
    assert final[ids[0]] in ("completed", "failed"), final
    if poison == "error":
        async with pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT state::text, last_error FROM jobs WHERE id = %s", (ids[0],)
                )
            ).fetchone()
        assert row[0] == "failed" and row[1].startswith("RuntimeError: cannot parse byte"), row
