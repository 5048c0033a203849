"""The built-in periodic work: declared schedules, listed by the CLI on a fresh
database, and fired once per slot however many workers run.

``housekeeping.requeue_stranded`` is declared per minute. Three real ``triaged worker``
processes run until the first whole-minute slot after all three were ready has passed;
that slot ran exactly once, as a completed job, and no slot of any built-in schedule
ever fired twice. (One slot, not several: that each later slot fires once under three
workers is ``test_schedules_e2e``'s ten per-second slots; this test's part is that the
built-in schedules are declared and run, and its wait is up to a minute per slot.)
"""

from __future__ import annotations

import json
import signal
import sys
from collections import Counter
from datetime import timedelta

import pytest
import trio

from daemon.shared.db import open_pool
from tests.e2e.process import ROOT, base_env
from tests.e2e.test_schedules_e2e import db_now, wait_ready

pytestmark = pytest.mark.e2e

BUILT_IN = (
    "housekeeping.auth_prune",
    "housekeeping.prune_idempotency_keys",
    "housekeeping.requeue_stranded",
    "retention.purge",  # daily at TRIAGED_RETENTION_PURGE_TIME (issue 15)
    "notifications.escalation_check",  # issue 14: every minute by default
)
PER_MINUTE = "housekeeping.requeue_stranded"


async def test_a_fresh_database_lists_the_built_in_schedules(database_url):
    async def schedules(*options: str) -> str:
        result = await trio.run_process(
            [sys.executable, "-m", "daemon", "schedules", *options],
            env=base_env(TRIAGED_DATABASE_URL=database_url),
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout.decode()

    listed = {s["name"]: s for s in json.loads(await schedules("--json"))}
    assert sorted(listed) == sorted(BUILT_IN)
    for name in BUILT_IN:
        assert listed[name]["built_in"] is True and listed[name]["enabled"] is True
        assert listed[name]["next_run"] is not None and listed[name]["last_slot"] is None
    assert listed[PER_MINUTE]["cron"] == "* * * * *"
    assert listed["retention.purge"]["cron"] == "30 3 * * *"
    table = await schedules()
    assert "BUILT-IN" in table.splitlines()[0]
    assert all(any(line.startswith(name) for line in table.splitlines()) for name in BUILT_IN)


async def test_three_workers_run_the_per_minute_slot_exactly_once(start_triaged, database_url):
    workers = [start_triaged("worker") for _ in range(3)]
    async with open_pool(database_url, max_size=2) as pool:
        await wait_ready(workers, timeout=60)
        ready = await db_now(pool)
        slots = [ready.replace(second=0, microsecond=0) + timedelta(minutes=1)]
        with trio.fail_after(140):  # a minute at most, and the job's run
            while not await _completed(pool, slots):
                for worker in workers:
                    assert worker.proc.poll() is None, worker.output()
                await trio.sleep(1)
        for worker in workers:
            worker.signal(signal.SIGTERM)
        codes = [await worker.wait_exit(timeout=30) for worker in workers]
        assert codes == [0, 0, 0], "\n".join(w.output()[-3000:] for w in workers)
        async with pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT payload->'_schedule'->>'name',"
                    " (payload->'_schedule'->>'slot')::timestamptz, state::text FROM jobs"
                    " WHERE payload ? '_schedule'"
                )
            ).fetchall()
    fired = Counter((name, slot) for name, slot, _ in rows)
    assert [key for key, n in fired.items() if n > 1] == [], "a slot fired twice"
    per_minute = {slot: state for name, slot, state in rows if name == PER_MINUTE}
    for slot in slots:
        assert per_minute.get(slot) == "completed", (slot, sorted(per_minute.items()))
    assert {name for name, _, _ in rows} <= set(BUILT_IN)


async def _completed(pool, slots) -> bool:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FROM jobs WHERE payload->'_schedule'->>'name' = %(name)s"
                " AND (payload->'_schedule'->>'slot')::timestamptz = ANY(%(slots)s)"
                " AND state = 'completed'",
                {"name": PER_MINUTE, "slots": slots},
            )
        ).fetchone()
    return row[0] >= len(slots)
