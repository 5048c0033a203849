"""Stress: several ``triaged worker`` processes, random handler failures and hard crashes.

What must hold, whatever the interleaving: every job ends in exactly one terminal state
(``completed`` or ``failed``), no job runs twice at the same time, and no job is charged
more attempts than its ``max_attempts``.

Four worker processes run ``test.work`` jobs (``tests/e2e/queue_launcher.py``) with short
leases. A quarter of the runs raise; a few runs ``os._exit`` their whole process mid-job,
and the test SIGKILLs a worker twice more at arbitrary points (between a claim and the
handler's start, between a handler's end and the write of its outcome, ...). A loop in
the test plays systemd: it notes when each process died and starts a replacement, so
four are always running. The random choices come from one seed, printed, and taken from
``TRIAGED_STRESS_SEED`` when set: the payloads, and with them every run's decision to
fail or crash, are replayed exactly (the interleaving, of course, is not).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections import defaultdict
from datetime import datetime

import pytest
import trio

from daemon.queue import Backoff
from daemon.shared.db import open_pool
from tests.e2e.process import ROOT, Triaged
from tests.e2e.queue_launcher import (
    EXIT_STATUS,
    QUEUE,
    concurrent_runs,
    db_now,
    enqueue_work,
    prepare,
    runs_by_job,
    state_counts,
)

pytestmark = pytest.mark.e2e

LAUNCHER = [sys.executable, str(ROOT / "tests" / "e2e" / "queue_launcher.py")]
SEED_VARIABLE = "TRIAGED_STRESS_SEED"
WORKERS = 4
CONCURRENCY = 8
TOTAL = 2500
MAX_ATTEMPTS = 5
FAIL_PROBABILITY = 0.25
DOOMED_SHARE = 0.03  # jobs that fail every attempt: they must end failed, on attempt 5
EXIT_PROBABILITY = 0.003  # per run: about 10 hard crashes over ~3,500 runs
EXTERNAL_KILLS_AT = (0.25, 0.6)  # SIGKILL a random worker when this share is finished
ENV = {
    "TRIAGED_QUEUE_LEASE_SECONDS": "2",
    "TRIAGED_QUEUE_RESCUE_INTERVAL_SECONDS": "0.25",
    "TRIAGED_QUEUE_POLL_INTERVAL_SECONDS": "0.25",
    "TRIAGED_WORKER_CONCURRENCY": str(CONCURRENCY),
    "TRIAGED_DB_POOL_MAX_SIZE": "4",
}


async def wait_ready(process: Triaged, timeout: float = 20) -> None:
    """Until the process logged ``ready`` (a worker has no HTTP to probe)."""
    deadline = time.monotonic() + timeout
    while not any(r.get("action") == "supervisor.ready" for r in process.log_records()):
        assert process.proc.poll() is None, process.output()[-5000:]
        assert time.monotonic() < deadline, f"not ready in {timeout}s:\n{process.output()}"
        await trio.sleep(0.05)


async def test_workers_crashing_at_random_never_lose_double_run_or_overcharge_a_job(
    start_triaged, database_url
):
    seed = int(os.environ.get(SEED_VARIABLE) or random.randrange(2**32))
    print(f"stress seed {seed}: replay with {SEED_VARIABLE}={seed}")
    rng = random.Random(seed)
    doomed_at = set(rng.sample(range(TOTAL), int(TOTAL * DOOMED_SHARE)))
    payloads = [
        {
            "seed": seed,
            "sleep": round(rng.uniform(0, 0.04), 4),
            "fail": 1.0 if i in doomed_at else FAIL_PROBABILITY,
            "exit": EXIT_PROBABILITY,
        }
        for i in range(TOTAL)
    ]

    def start() -> Triaged:
        return start_triaged("worker", launcher=LAUNCHER, **ENV)

    deaths: dict[int, list[datetime]] = defaultdict(list)  # pid -> when (database clock)
    crashed: list[Triaged] = []  # by their own hand (os._exit in a handler)
    killed: list[Triaged] = []  # by the test
    async with open_pool(database_url, max_size=2) as pool:
        await prepare(pool)
        ids = await enqueue_work(
            pool,
            payloads,
            max_attempts=MAX_ATTEMPTS,
            backoff=Backoff(base_seconds=0.02, max_seconds=0.1),
        )
        doomed = {ids[i] for i in doomed_at}
        alive = [start() for _ in range(WORKERS)]
        kill_points = [int(TOTAL * share) for share in EXTERNAL_KILLS_AT]
        started = time.monotonic()
        while True:
            for process in list(alive):
                if process.proc.poll() is not None:
                    deaths[process.proc.pid].append(await db_now(pool))
                    assert process.proc.returncode == EXIT_STATUS, (
                        f"a worker died on its own, not by a test crash (seed {seed}):\n"
                        f"{process.output()[-5000:]}"
                    )
                    crashed.append(process)
                    alive.remove(process)
                    alive.append(start())
            counts = await state_counts(pool)
            finished = counts.get("completed", 0) + counts.get("failed", 0)
            if finished == TOTAL:
                break
            if kill_points and finished >= kill_points[0]:
                kill_points.pop(0)
                victim = rng.choice(alive)
                victim.proc.kill()
                victim.proc.wait(10)
                deaths[victim.proc.pid].append(await db_now(pool))
                killed.append(victim)
                alive.remove(victim)
                alive.append(start())
            if time.monotonic() - started > 60:
                raise AssertionError(f"not quiescent after 60 s (seed {seed}): {counts}")
            await trio.sleep(0.05)
        elapsed = time.monotonic() - started
        for process in alive:
            # A replacement started just now may not handle signals yet: wait for it.
            await wait_ready(process)
            process.signal(signal.SIGTERM)
        for process in alive:  # nothing was running: a clean, quick drain
            assert await process.wait_exit(timeout=15) == 0, process.output()[-5000:]

        async with pool.connection() as conn:
            jobs = {
                row[0]: row[1:]
                for row in await (
                    await conn.execute(
                        "SELECT id, queue, state::text, attempts, max_attempts, result, last_error,"
                        " finished_at FROM jobs"
                        # The workers also run the built-in schedules (a per-minute one
                        # among them): their jobs are not this test's; every other one is.
                        " WHERE queue NOT IN (SELECT queue FROM schedules)",
                    )
                ).fetchall()
            }
        runs = await runs_by_job(pool)
    print(
        f"{TOTAL} jobs in {elapsed:.1f}s: {counts}; {sum(map(len, runs.values()))} runs, "
        f"{len(crashed)} crashes, {len(killed)} kills"
    )
    context = f"seed {seed}"

    # Exactly the jobs enqueued (no duplicate, no dead letter), each in one terminal state.
    assert set(jobs) == set(ids), context
    assert {queue for queue, *_ in jobs.values()} == {QUEUE}
    assert set(counts) <= {"completed", "failed"}, (counts, context)
    assert len(killed) == len(EXTERNAL_KILLS_AT)

    # No job ran twice at once; every run ended, or its process died.
    assert concurrent_runs(runs, deaths) == [], context

    claims_without_run = 0
    for job_id, (_, state, attempts, max_attempts, result, last_error, finished_at) in jobs.items():
        job_runs = runs.get(job_id, [])
        where = f"job {job_id} ({context}): {state}, {attempts} attempts, runs {job_runs}"
        assert 1 <= attempts <= max_attempts == MAX_ATTEMPTS, where
        # Attempts are only charged by claims, and no attempt is given back here (no
        # RetryLater, no drain with jobs running), so every run has its own attempt number,
        # in the order they ran. A run that raised was charged by fail_job, one cut by a
        # crash by the lease rescue, one that succeeded by its completion (or by the
        # rescue, when its process died before the outcome was written): each run is one
        # attempt. There can be more attempts than runs, never fewer: a process that died
        # between a claim and its handler's first statement spent an attempt without a run.
        numbers = [run.attempt for run in job_runs]
        assert numbers == sorted(set(numbers)), where
        assert all(1 <= n <= attempts for n in numbers), where
        claims_without_run += attempts - len(job_runs)
        # Terminal means terminal: nothing ran after the job finished.
        assert finished_at is not None, where
        assert all(run.started_at < finished_at for run in job_runs), where
        if state == "completed":
            # The outcome recorded is the last run's, which succeeded, on the last attempt
            # (fencing: an earlier attempt could not complete the job).
            assert job_runs, where
            assert job_runs[-1].outcome == "ok", where
            assert result == {"run": job_runs[-1].id, "attempt": attempts}, where
            assert job_id not in doomed, where
        else:
            assert attempts == max_attempts, where
            assert last_error.startswith(
                ("RuntimeError: injected failure", "lease expired: worker ")
            ), where
    # Attempts without a run only come from deaths, at most a process's concurrency each.
    assert claims_without_run <= (len(crashed) + len(killed)) * CONCURRENCY, context
    # Jobs that fail every time end failed after exactly max_attempts (checked above); the
    # others fail only if five attempts in a row fail, which is rare.
    assert doomed <= {job_id for job_id, row in jobs.items() if row[1] == "failed"}, context
    assert counts.get("failed", 0) - len(doomed) < TOTAL * 0.02, (counts, context)
