"""``triaged retention run`` and ``triaged audit verify`` as real processes: a purge
SIGKILLed in the middle of its run, run again, ends as one uninterrupted run would (the
same rows gone, the same counts in its report); ``audit verify`` passes on an untouched
log and names the first broken event, with a non-zero exit, after a row is altered; a
``triaged worker`` runs the declared schedule's purge job."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import trio

from daemon.modules.audit import AuditContext, record
from daemon.queue import enqueue
from daemon.shared.db import migrate, open_pool
from tests.e2e.process import ROOT, base_env
from tests.e2e.test_schedules_e2e import wait_ready
from tests.integration.retention_seed import expected, seed

pytestmark = pytest.mark.e2e


def env_for(database_url, tmp_path, **extra: str) -> dict[str, str]:
    return base_env(
        TRIAGED_DATABASE_URL=database_url,
        TRIAGED_DATA_DIR=str(tmp_path),
        TRIAGED_LOG_LEVEL="WARNING",
        TRIAGED_RETENTION_DOCUMENT_HISTORY_DAYS="36500",
        **extra,
    )


async def triaged(env, *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(120):
        return await trio.run_process(
            [sys.executable, "-m", "daemon", *args],
            env=env,
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_a_purge_killed_mid_run_then_run_again_ends_as_one_run(database_url, tmp_path):
    n = 20_000
    want = expected(n)
    async with open_pool(database_url, max_size=3) as pool:
        await migrate.apply(pool)
        await seed(pool, n)
        env = env_for(database_url, tmp_path, TRIAGED_RETENTION_BATCH_ROWS="40")
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "daemon", "retention", "run"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Kill it once some batches of documents have committed, before it is done.
            with trio.fail_after(60):
                while True:
                    async with pool.connection() as conn:
                        row = await (
                            await conn.execute(
                                "SELECT coalesce((report->'completed_documents'->>'deleted')"
                                "::int, 0), finished_at FROM retention_runs"
                            )
                        ).fetchone()
                    if row is not None and row[0] > 0:
                        break
                    assert proc.poll() is None, "the purge ended before it could be killed"
                    await trio.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            await proc.wait()
        async with pool.connection() as conn:
            killed = await (
                await conn.execute("SELECT finished_at, report FROM retention_runs")
            ).fetchone()
            left = await (await conn.execute("SELECT count(*) FROM documents")).fetchone()
        assert killed[0] is None, "the run finished before the kill"
        partly = killed[1]["completed_documents"]["deleted"]
        assert 0 < partly < want.deleted["completed_documents"]
        assert left[0] > n - len(want.gone)  # not everything went yet

        done = await triaged(env, "retention", "run", "--json")
        assert done.returncode == 0, done.stderr.decode()
        async with pool.connection() as conn:
            runs = await (
                await conn.execute("SELECT id, finished_at, report FROM retention_runs")
            ).fetchall()
            documents = {
                r[0] for r in await (await conn.execute("SELECT id FROM documents")).fetchall()
            }
            blobs = await (await conn.execute("SELECT count(*) FROM document_blobs")).fetchone()
        assert set(range(1, n + 1)) - documents == want.gone
        assert blobs[0] == len(documents)
        # The second command continued the killed run: one run, exact counts.
        [(_run_id, finished_at, report)] = runs
        assert finished_at is not None
        for kind, count in want.deleted.items():
            assert report[kind]["deleted"] == count, kind
            assert report[kind]["held"] == want.held.get(kind, 0), kind


async def test_audit_verify_passes_untouched_and_names_the_altered_event(database_url, tmp_path):
    env = env_for(database_url, tmp_path)
    async with open_pool(database_url, max_size=2) as pool:
        await migrate.apply(pool)
        async with pool.transaction() as conn:
            # Old events (past the 730-day period) then recent ones.
            await conn.execute(
                "INSERT INTO audit_events (at, actor_type, action, details) "
                "SELECT now() - interval '800 days', 'system', 'test.old', "
                "jsonb_build_object('n', i) FROM generate_series(1, 30) i"
            )
            for i in range(20):
                await record(conn, AuditContext.system(), "test.recent", details={"n": i})
        ok = await triaged(env, "audit", "verify")
        assert ok.returncode == 0, ok.stdout.decode() + ok.stderr.decode()
        assert "intact: 50 event(s) from the start" in ok.stdout.decode()
        # No TRIAGED_AUDIT_CHECKPOINT_KEY here: verify says what that leaves exposed.
        assert "warning: TRIAGED_AUDIT_CHECKPOINT_KEY is not set" in ok.stderr.decode()

        purged = await triaged(env, "retention", "run")
        assert purged.returncode == 0, purged.stderr.decode()
        ok = await triaged(env, "audit", "verify")
        assert ok.returncode == 0, ok.stdout.decode()
        # 20 recent events and the run's own one remain, checked from the checkpoint.
        assert "intact: 21 event(s) from checkpoint" in ok.stdout.decode()

        async with pool.connection() as conn:
            target = (
                await (
                    await conn.execute(
                        "SELECT id FROM audit_events WHERE action = 'test.recent' "
                        "ORDER BY seq OFFSET 5 LIMIT 1"
                    )
                ).fetchone()
            )[0]
        async with pool.transaction() as conn:  # as a superuser would
            await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
            await conn.execute(
                "UPDATE audit_events SET details = '{\"n\": 999}' WHERE id = %s", (target,)
            )
            await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
        broken = await triaged(env, "audit", "verify")
        assert broken.returncode == 1
        assert f"BROKEN at event {target}:" in broken.stdout.decode()
        assert "was changed" in broken.stdout.decode()


async def test_a_worker_runs_the_purge_job_of_the_declared_schedule(start_triaged, database_url):
    n = 2_000
    want = expected(n)
    async with open_pool(database_url, max_size=2) as pool:
        await migrate.apply(pool)
        await seed(pool, n)
        worker = start_triaged("worker", TRIAGED_RETENTION_DOCUMENT_HISTORY_DAYS="36500")
        await wait_ready([worker], timeout=60)
        async with pool.connection() as conn:
            schedule = await (
                await conn.execute(
                    "SELECT queue, cron, timezone, enabled FROM schedules "
                    "WHERE name = 'retention.purge'"
                )
            ).fetchone()
        assert schedule == ("retention.purge", "30 3 * * *", "UTC", True)
        # The slot's job, enqueued now rather than waiting for 03:30.
        async with pool.transaction() as conn:
            job = await enqueue(conn, "retention.purge", {})
        with trio.fail_after(60):
            while True:
                async with pool.connection() as conn:
                    row = await (
                        await conn.execute(
                            "SELECT state::text, result FROM jobs WHERE id = %s", (job.id,)
                        )
                    ).fetchone()
                if row[0] == "completed":
                    break
                assert worker.proc.poll() is None, worker.output()
                await trio.sleep(0.1)
        async with pool.connection() as conn:
            run = await (
                await conn.execute(
                    "SELECT id, trigger, finished_at IS NOT NULL, report FROM retention_runs "
                    "WHERE job_id = %s",
                    (job.id,),
                )
            ).fetchone()
            left = await (await conn.execute("SELECT count(*) FROM documents")).fetchone()
        assert run[1:3] == ("schedule", True)
        assert row[1]["run_id"] == run[0]
        assert left[0] == n - len(want.gone)
        for kind, count in want.deleted.items():
            assert run[3][kind]["deleted"] == count, kind


async def test_a_process_started_without_a_checkpoint_key_warns_once_at_start(start_triaged):
    unset = start_triaged("serve")
    await unset.wait_ready()
    keyed = start_triaged("serve", TRIAGED_AUDIT_CHECKPOINT_KEY="a checkpoint key of some length")
    await keyed.wait_ready()
    for process in (unset, keyed):
        process.signal(signal.SIGTERM)
        assert await process.wait_exit(timeout=30) == 0
    assert unset.output().count("audit.checkpoint_key_unset") == 1
    assert "audit.checkpoint_key_unset" not in keyed.output()
    assert "a checkpoint key of some length" not in keyed.output()
