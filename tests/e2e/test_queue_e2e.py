"""The queue's guarantees across a crash and a drain of the real ``triaged serve``.

* SIGKILL mid-way, restart: every job ends completed, the ones the dead process held come
  back after their lease (that attempt counts), none is run twice at once.
* SIGTERM mid-way with enough job grace: running jobs finish, exit 0, nothing ``active``,
  the others untouched; after a restart every job has run exactly once.
* SIGTERM mid-way with a job grace shorter than the running jobs: they are cancelled and
  released (``created`` again, their attempt given back), nothing lost; the exit status is
  0, since the release loses nothing (see ``daemon/supervisor.py``); after a restart every
  job completes on its first charged attempt.

The jobs are ``test.work`` jobs of ``tests/e2e/queue_launcher.py``, which records each
run in ``test_runs``.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Awaitable, Callable

import pytest
import trio

from daemon.shared.db import open_pool
from tests.e2e.process import ROOT, Triaged
from tests.e2e.queue_launcher import (
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
LEASE_SECONDS = 2.0
QUEUE_ENV = {
    "TRIAGED_QUEUE_LEASE_SECONDS": str(LEASE_SECONDS),
    "TRIAGED_QUEUE_RESCUE_INTERVAL_SECONDS": "0.5",
    "TRIAGED_QUEUE_POLL_INTERVAL_SECONDS": "0.5",
    "TRIAGED_PRE_STOP_DELAY_SECONDS": "0",
    "TRIAGED_DB_POOL_MAX_SIZE": "4",
}


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str, processes: list[Triaged]
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        for process in processes:
            if process.proc.poll() is not None:
                raise AssertionError(
                    f"triaged exited with {process.proc.returncode} while "
                    f"waiting for {what}:\n{process.output()[-5000:]}"
                )
        if time.monotonic() > deadline:
            logs = "\n".join(p.output()[-3000:] for p in processes)
            raise AssertionError(f"no {what} within {timeout}s:\n{logs}")
        await trio.sleep(0.02)


async def jobs(pool) -> dict[int, tuple]:
    """id -> (state, attempts, max_attempts, last_error, result, lease_token, started_at)."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT id, state::text, attempts, max_attempts, last_error, result, lease_token,"
                " started_at FROM jobs WHERE queue = %s",
                (QUEUE,),
            )
        ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


async def active_ids(pool) -> set[int]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT id FROM jobs WHERE queue = %s AND state = 'active'", (QUEUE,)
            )
        ).fetchall()
    return {row[0] for row in rows}


def actions(process: Triaged, action: str) -> list[dict]:
    return [r for r in process.log_records() if r.get("action") == action]


async def stop_cleanly(process: Triaged) -> None:
    process.signal(signal.SIGTERM)
    code = await process.wait_exit(timeout=15)
    assert code == 0, process.output()[-5000:]


async def test_sigkilled_serve_is_restarted_and_all_2000_jobs_complete(start_triaged, database_url):
    total = 2000
    env = {**QUEUE_ENV, "TRIAGED_WORKER_CONCURRENCY": "10"}
    async with open_pool(database_url, max_size=2) as pool:
        await prepare(pool)
        ids = await enqueue_work(pool, [{"sleep": 0.02}] * total, max_attempts=5)
        assert len(ids) == total

        async def completed_at_least(n: int) -> bool:
            return (await state_counts(pool)).get("completed", 0) >= n

        first = start_triaged("serve", launcher=LAUNCHER, **env)
        await first.wait_ready()
        await wait_until(
            lambda: completed_at_least(total // 4),
            timeout=30,
            what="first quarter completed",
            processes=[first],
        )
        first.proc.kill()
        first.proc.wait(10)
        deaths = {first.proc.pid: [await db_now(pool)]}
        # A claim the server was executing when its client died still commits: let it land.
        await trio.sleep(0.2)
        after_kill = await state_counts(pool)
        held = await active_ids(pool)  # claimed by the dead process, leases still running
        assert 0 < after_kill.get("completed", 0) < total, after_kill
        assert held, f"the kill hit no running job: {after_kill}"
        assert sum(after_kill.values()) == total

        second = start_triaged("serve", launcher=LAUNCHER, **env)
        restarted = time.monotonic()
        await wait_until(
            lambda: completed_at_least(total),
            timeout=40,
            what="all jobs completed",
            processes=[second],
        )
        finished_in = time.monotonic() - restarted
        await stop_cleanly(second)

        assert await state_counts(pool) == {"completed": total}
        final = await jobs(pool)
        runs = await runs_by_job(pool)
    assert len(final) == total
    assert all(attempts <= max_attempts for _, attempts, max_attempts, *_ in final.values())
    # A job the dead process held comes back once its lease expires, and that attempt
    # counts (the process may have died after the handler's side effects): attempt 2.
    # Every other job ran once.
    wrong_attempts = {
        job_id: row[1] for job_id, row in final.items() if row[1] != (2 if job_id in held else 1)
    }
    assert not wrong_attempts, f"held={sorted(held)} wrong={wrong_attempts}"
    for job_id in held:
        assert final[job_id][3].startswith("lease expired: worker "), final[job_id]
    rescued = {r["job_id"] for r in actions(second, "job.rescued")}
    assert rescued == held
    # The recorded result is from a run of that job, the last one, and that run succeeded.
    for job_id, (_, attempts, _, _, result, *_) in final.items():
        last = runs[job_id][-1]
        assert result == {"run": last.id, "attempt": attempts}, (job_id, runs[job_id])
        assert last.outcome == "ok"
    # Runs cut by the kill all belong to held jobs; none ran twice at once.
    cut = {r.job_id for rs in runs.values() for r in rs if r.finished_at is None}
    assert cut <= held
    assert all(
        r.worker_pid == first.proc.pid for rs in runs.values() for r in rs if r.finished_at is None
    )
    assert concurrent_runs(runs, deaths) == []
    # The held jobs waited for their lease: the rest should not take much longer.
    assert finished_in < 30, finished_in


async def _start_draining_mid_way(
    start_triaged, pool, *, grace: float, short: int, long_jobs: int, long_sleep: float
):
    """Run ``short`` quick jobs then ``long_jobs`` slow ones, 4 at a time; SIGTERM when
    the first 4 slow ones are running. Returns the process, the ids of the jobs running
    at the signal, the database time of the signal, the seconds until exit, the status."""
    await enqueue_work(pool, [{"sleep": 0.1}] * short + [{"sleep": long_sleep}] * long_jobs)
    serve = start_triaged(
        "serve",
        launcher=LAUNCHER,
        TRIAGED_WORKER_CONCURRENCY="4",
        TRIAGED_JOB_GRACE_SECONDS=str(grace),
        **QUEUE_ENV,
    )
    await serve.wait_ready()

    async def slow_ones_running() -> bool:
        counts = await state_counts(pool)
        return counts.get("completed", 0) == short and counts.get("active", 0) == 4

    await wait_until(slow_ones_running, timeout=20, what="the slow jobs running", processes=[serve])
    await trio.sleep(0.2)  # well inside the slow jobs
    running = await active_ids(pool)
    assert len(running) == 4
    signalled_at = await db_now(pool)
    signalled = time.monotonic()
    serve.signal(signal.SIGTERM)
    code = await serve.wait_exit(timeout=long_sleep + grace + 10)
    print(f"exit status {serve.proc.returncode}, {time.monotonic() - signalled:.2f}s after SIGTERM")
    return serve, running, signalled_at, time.monotonic() - signalled, code


async def _restart_and_complete(start_triaged, pool, total: int) -> Triaged:
    again = start_triaged("serve", launcher=LAUNCHER, TRIAGED_WORKER_CONCURRENCY="8", **QUEUE_ENV)

    async def all_completed() -> bool:
        return (await state_counts(pool)).get("completed", 0) == total

    await wait_until(all_completed, timeout=30, what="all jobs completed", processes=[again])
    await stop_cleanly(again)
    assert await state_counts(pool) == {"completed": total}
    return again


async def test_sigterm_with_enough_job_grace_lets_running_jobs_finish_and_exits_0(
    start_triaged, database_url
):
    short, long_jobs, long_sleep = 4, 8, 1.0
    total = short + long_jobs
    async with open_pool(database_url, max_size=2) as pool:
        await prepare(pool)
        serve, running, signalled_at, exited_in, code = await _start_draining_mid_way(
            start_triaged, pool, grace=10, short=short, long_jobs=long_jobs, long_sleep=long_sleep
        )
        assert code == 0, serve.output()[-5000:]
        # It waited for the running jobs (about 0.8 s left), not for the grace period.
        assert exited_in < 5, exited_in
        assert actions(serve, "supervisor.deadline") == []
        (draining,) = actions(serve, "queue.draining")
        assert "waiting for 4 running job(s)" in draining["msg"]

        after = await jobs(pool)
        runs = await runs_by_job(pool)
        states = {job_id: (row[0], row[1]) for job_id, row in after.items()}
        completed = {job_id for job_id, s in states.items() if s == ("completed", 1)}
        untouched = {job_id for job_id, s in states.items() if s == ("created", 0)}
        # Nothing active, nothing lost, nothing charged: completed on the first attempt,
        # or never started.
        assert completed | untouched == set(states), states
        assert running <= completed
        assert len(untouched) == long_jobs - 4
        assert set(runs) == completed
        for job_id in running:  # ran through the drain to its end
            (run,) = runs[job_id]
            assert run.outcome == "ok" and run.finished_at > signalled_at

        await _restart_and_complete(start_triaged, pool, total)
        final = await jobs(pool)
        runs = await runs_by_job(pool)
    assert {job_id: row[1] for job_id, row in final.items()} == dict.fromkeys(final, 1)
    assert {job_id: len(rs) for job_id, rs in runs.items()} == dict.fromkeys(final, 1)


async def test_sigterm_with_short_job_grace_releases_running_jobs_without_charging_them(
    start_triaged, database_url
):
    short, long_jobs, long_sleep, grace = 4, 8, 1.5, 0.5
    total = short + long_jobs
    async with open_pool(database_url, max_size=2) as pool:
        await prepare(pool)
        serve, running, _, exited_in, code = await _start_draining_mid_way(
            start_triaged,
            pool,
            grace=grace,
            short=short,
            long_jobs=long_jobs,
            long_sleep=long_sleep,
        )
        # The deadline cut the running jobs (~1.3 s left): nobody waited for them to end.
        assert exited_in < grace + 1.5, exited_in
        assert len(actions(serve, "supervisor.deadline")) == 1
        # Released jobs lose nothing and run again: a clean drain, exit 0
        # (daemon/supervisor.py: "jobs released at the job grace deadline count as clean").
        assert code == 0, serve.output()[-5000:]
        assert {r["job_id"] for r in actions(serve, "job.released")} == running

        assert await state_counts(pool) == {"completed": short, "created": long_jobs}
        after = await jobs(pool)
        runs = await runs_by_job(pool)
        for job_id in running:
            state, attempts, _, _, _, lease_token, started_at = after[job_id]
            # Back to how it was before the claim: first attempt not spent, no lease.
            assert (state, attempts, lease_token, started_at) == ("created", 0, None, None)
            (run,) = runs[job_id]
            assert run.outcome == "cancelled" and run.finished_at is not None

        await _restart_and_complete(start_triaged, pool, total)
        final = await jobs(pool)
        runs = await runs_by_job(pool)
    # The drain cost no attempt: every job completed on its first charged attempt.
    assert {job_id: row[1] for job_id, row in final.items()} == dict.fromkeys(final, 1)
    for job_id, job_runs in runs.items():
        outcomes = [r.outcome for r in job_runs]
        assert outcomes == (["cancelled", "ok"] if job_id in running else ["ok"]), job_id
        # attempt numbers as the handler saw them: the released run was attempt 1, and so
        # was the run after the restart
        assert [r.attempt for r in job_runs] == [1] * len(job_runs)
