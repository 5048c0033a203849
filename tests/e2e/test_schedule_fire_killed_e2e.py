"""A ``triaged worker`` SIGKILLed while it fires a slot: the slot still fires exactly once.

A slot fires in one transaction (claim_slot: the schedule row locked and the fire row
inserted; the job's INSERT; record_fire). The test holds a lock that one statement of
that transaction needs, so the worker blocks inside the fire, either

* ``claim``: on the schedule row (the test holds it ``FOR UPDATE``), before anything of
  the fire is written, or
* ``enqueue``: in the job's INSERT, after claim_slot has locked the schedule row and
  inserted the fire row (the test holds, not committed, a job row with the id the
  INSERT will take).

Once PostgreSQL shows the worker's statement waiting on the test's lock, the worker is
SIGKILLed, and the lock released. The orphaned server session goes on, finds its client
gone and ends: its transaction rolls back, leaving neither fire record nor job. A second
worker then fires that slot, and the ones after it, each exactly once: one job and one
``schedule_fires`` row (pointing at that job) per slot.
"""

from __future__ import annotations

import signal
from collections import Counter
from datetime import datetime, timedelta

import psycopg
import pytest
import trio

from daemon.shared.db import open_pool
from daemon.shared.db.psycopg_trio import TrioConnection
from tests.e2e.test_schedules_e2e import cli, wait_ready

pytestmark = pytest.mark.e2e

NAME = "e2e.kill-mid-fire"
QUEUE = "e2e.kill-mid-fire"  # no worker serves it: its jobs stay, one per fired slot
INTERVAL = timedelta(seconds=2)

# Who waits on the test's lock, and in which statement (only this test's database).
BLOCKED = (
    "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database()"
    " AND %s = ANY(pg_blocking_pids(pid))"
)
SLOT_JOBS = (
    "SELECT id, (payload->'_schedule'->>'slot')::timestamptz FROM jobs"
    " WHERE queue = %s ORDER BY 2, 1"
)


async def _take_lock(conn: TrioConnection, where: str) -> None:
    """In the open transaction of ``conn``, the lock the fire's ``where`` statement needs."""
    if where == "claim":
        await conn.execute("SELECT 1 FROM schedules WHERE name = %s FOR UPDATE", (NAME,))
        return
    # The id the next job will get, taken by a row not committed: the next INSERT INTO
    # jobs waits for this transaction (its primary key's uniqueness check). Claims and
    # every other statement on jobs go on; a lock on the whole table would stop them,
    # and the worker's queue pool would run dry before its scheduler got to the fire.
    cursor = await conn.execute(
        "INSERT INTO jobs (id, queue, max_attempts)"
        " SELECT coalesce(s.last_value + s.increment_by, s.start_value), %s, 1"
        " FROM pg_sequences s"
        " WHERE format('%%I.%%I', s.schemaname, s.sequencename)::regclass"
        "   = pg_get_serial_sequence('jobs', 'id')::regclass",
        (f"{QUEUE}.placeholder",),
    )
    assert cursor.rowcount == 1


def _is_the_fire(where: str, query: str) -> bool:
    """Whether ``query`` is the fire statement that ``where`` blocks."""
    if where == "claim":
        return "INSERT INTO schedule_fires" in query  # claim_slot
    return "INSERT INTO jobs" in query  # the slot's job (enqueue)


async def _schedule_row_locked(pool) -> bool:
    async with pool.connection() as conn:
        try:
            await conn.execute("SELECT 1 FROM schedules WHERE name = %s FOR UPDATE NOWAIT", (NAME,))
        except psycopg.errors.LockNotAvailable:
            return True
        finally:
            await conn.rollback()
        return False


async def _slot_state(pool) -> tuple[list[tuple[int, object]], list[tuple[object, int | None]]]:
    """The schedule's jobs (id, slot) and its fire records (slot, job id)."""
    async with pool.connection() as conn:
        jobs = await (await conn.execute(SLOT_JOBS, (QUEUE,))).fetchall()
        fires = await (
            await conn.execute(
                "SELECT slot, job_id FROM schedule_fires WHERE schedule = %s ORDER BY slot",
                (NAME,),
            )
        ).fetchall()
        await conn.rollback()
    return jobs, fires


@pytest.mark.parametrize("where", ["claim", "enqueue"])
async def test_a_worker_killed_while_firing_a_slot_leaves_it_to_fire_exactly_once(
    start_triaged, database_url, where
):
    # Migrates the database and declares the built-in schedules, then defines ours.
    out = await cli(database_url, "schedules", "set", NAME, "--every", "2", "--queue", QUEUE)
    assert out.startswith(f"schedule {NAME} created: "), out
    async with open_pool(database_url, max_size=3) as pool:
        async with pool.connection() as conn:
            # Only our schedule fires: the worker's scheduler does nothing else meanwhile.
            await conn.execute("UPDATE schedules SET enabled = false WHERE name <> %s", (NAME,))
            active_since = (
                await (
                    await conn.execute(
                        "SELECT active_since FROM schedules WHERE name = %s", (NAME,)
                    )
                ).fetchone()
            )[0]
            await conn.commit()

        holder = await TrioConnection.connect(database_url)
        try:
            await _take_lock(holder, where)
            holder_pid = holder.pgconn.backend_pid

            with trio.fail_after(60):  # a worker's start on a loaded machine, and one slot
                first = start_triaged("worker")
                blocked_pid = None
                while blocked_pid is None:
                    assert first.proc.poll() is None, first.output()
                    async with pool.connection() as conn:
                        rows = await (await conn.execute(BLOCKED, (holder_pid,))).fetchall()
                        await conn.rollback()
                    blocked_pid = next((pid for pid, q in rows if _is_the_fire(where, q)), None)
                    if blocked_pid is None:
                        await trio.sleep(0.1)
            if where == "enqueue":
                # claim_slot is done, and its transaction still holds the schedule row.
                assert await _schedule_row_locked(pool), "the fire is not one transaction"

            first.signal(signal.SIGKILL)
            assert await first.wait_exit(timeout=20) == -signal.SIGKILL
        finally:
            await holder.rollback()  # the lock goes
            await holder.close()

        # The killed worker's server session runs on, finds its client gone and ends,
        # rolling back: nothing of the fire remains.
        with trio.fail_after(30):
            while True:
                async with pool.connection() as conn:
                    row = await (
                        await conn.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (blocked_pid,)
                        )
                    ).fetchone()
                    await conn.rollback()
                if row[0] == 0:
                    break
                await trio.sleep(0.05)
        assert await _slot_state(pool) == ([], [])

        # Another worker fires that slot and the next ones.
        # Fires less than a minute apart are logged at DEBUG.
        second = start_triaged("worker", TRIAGED_LOG_LEVEL="DEBUG")
        await wait_ready([second], timeout=60)
        with trio.fail_after(30):
            while True:
                assert second.proc.poll() is None, second.output()
                jobs, fires = await _slot_state(pool)
                if len({slot for _, slot in jobs}) >= 3:
                    break
                await trio.sleep(0.1)
        second.signal(signal.SIGTERM)
        assert await second.wait_exit(timeout=30) == 0, second.output()[-3000:]
        jobs, fires = await _slot_state(pool)

    slots = [slot for _, slot in jobs]
    # The slot the killed worker was firing: the schedule's first, one interval at most
    # after its definition.
    killed_slot = slots[0]
    assert active_since < killed_slot <= active_since + INTERVAL, (active_since, slots)
    twice = [slot for slot, n in Counter(slots).items() if n > 1]
    assert twice == [], f"slots fired twice: {twice}"
    assert slots == [killed_slot + i * INTERVAL for i in range(len(slots))]  # none missing
    assert fires == [(slot, job_id) for job_id, slot in jobs]  # one fire record per job
    fired_logs = Counter(
        datetime.fromisoformat(r["slot"])
        for r in second.log_records()
        if r.get("action") == "schedule.fired" and r.get("schedule") == NAME
    )
    assert fired_logs == Counter(slots), fired_logs  # the second worker fired them all
