"""Per-second schedules under three real ``triaged worker`` processes.

Two schedules, defined with the CLI, fire every second: an interval (``--every 1``) and a
six-field cron expression (``* * * * * *``). Three workers run for about ten seconds and
are stopped with SIGTERM. Counted by slot time over a 10 s window that lies entirely
inside the period when all three ran, each schedule fired exactly 10 jobs, and no slot
ever fired twice.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest
import trio

from daemon.shared.db import open_pool
from tests.e2e.process import ROOT, Triaged, base_env

pytestmark = pytest.mark.e2e

WINDOW_SECONDS = 10
SCHEDULES = {
    "every-second": ["--every", "1", "--queue", "e2e.interval"],
    "cron-second": ["--cron", "* * * * * *", "--queue", "e2e.cron", "--timezone", "Europe/Berlin"],
}


async def cli(database_url: str, *args: str) -> str:
    env = base_env(TRIAGED_DATABASE_URL=database_url)
    result = await trio.run_process(
        [sys.executable, "-m", "daemon", *args],
        env=env,
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def db_now(pool) -> datetime:
    async with pool.connection() as conn:
        return (await (await conn.execute("SELECT clock_timestamp()")).fetchone())[0]


async def wait_ready(workers: list[Triaged], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for worker in workers:
        while not any(r.get("action") == "supervisor.ready" for r in worker.log_records()):
            assert worker.proc.poll() is None, worker.output()
            assert time.monotonic() < deadline, worker.output()
            await trio.sleep(0.05)


async def slots_by_schedule(pool) -> dict[str, list[datetime]]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT payload->'_schedule'->>'name', (payload->'_schedule'->>'slot')::timestamptz"
                " FROM jobs WHERE payload->'_schedule'->>'name' = ANY(%(names)s) ORDER BY 1, 2",
                {"names": list(SCHEDULES)},  # not the built-in housekeeping schedules
            )
        ).fetchall()
    slots: dict[str, list[datetime]] = {name: [] for name in SCHEDULES}
    for name, slot in rows:
        slots[name].append(slot)
    return slots


async def define_schedules(database_url: str) -> None:
    async def define(name: str, options: list[str]) -> None:
        out = await cli(database_url, "schedules", "set", name, *options)
        assert out.startswith(f"schedule {name} created: ")

    async with trio.open_nursery() as nursery:
        for name, options in SCHEDULES.items():
            nursery.start_soon(define, name, options)


async def test_three_workers_fire_every_per_second_slot_exactly_once(start_triaged, database_url):
    # The schedules are defined while the workers start (each re-reads them every 2 s);
    # slots a worker reaches late still fire, within the catch-up window.
    workers = [start_triaged("worker", TRIAGED_LOG_LEVEL="DEBUG") for _ in range(3)]
    await define_schedules(database_url)
    async with open_pool(database_url, max_size=2) as pool:
        await wait_ready(workers)
        # The window: whole seconds, starting after all three were ready.
        all_running = await db_now(pool)
        start = all_running.replace(microsecond=0) + timedelta(seconds=1)
        end = start + timedelta(seconds=WINDOW_SECONDS)
        # Slot end - 1 s fires at about end - 1 s; stop half a second after the window.
        await trio.sleep(max(0.0, (end - await db_now(pool)).total_seconds()) + 0.5)
        for worker in workers:
            assert worker.proc.poll() is None, worker.output()
            worker.signal(signal.SIGTERM)
        codes = [await worker.wait_exit(timeout=20) for worker in workers]
        assert codes == [0, 0, 0], "\n".join(w.output()[-3000:] for w in workers)

        slots = await slots_by_schedule(pool)
        async with pool.connection() as conn:
            fires = dict(
                await (
                    await conn.execute("SELECT schedule, count(*) FROM schedule_fires GROUP BY 1")
                ).fetchall()
            )

    for name, fired in slots.items():
        twice = [slot for slot, n in Counter(fired).items() if n > 1]
        assert not twice, f"{name}: slots fired twice: {twice}"
        in_window = [slot for slot in fired if start <= slot < end]
        assert len(in_window) == WINDOW_SECONDS, (name, start, in_window)
        assert fires[name] == len(fired)
        # From the definition (caught up at start) to the stop, no second is missing.
        assert fired == [fired[0] + timedelta(seconds=i) for i in range(len(fired))]
        assert fired[0].microsecond == 0

    records = [r for w in workers for r in w.log_records()]
    fired_logs = Counter(
        (r["schedule"], r["slot"])
        for r in records
        if r.get("action") == "schedule.fired" and r["schedule"] in SCHEDULES
    )
    assert sum(fired_logs.values()) == sum(len(v) for v in slots.values())
    assert max(fired_logs.values()) == 1
    problems = [
        r
        for r in records
        if r.get("logger") == "triaged.queue.schedules" and r["level"] in ("warning", "error")
    ]
    assert not problems, problems
