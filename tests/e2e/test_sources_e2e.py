"""A feed source polled every second under three real ``triaged worker`` processes.

The feed (a real server on loopback, in this test) has 20 entries, then 30 half-way.
Each second's slot of the source's schedule fires one job across the three processes,
each job polls once (one GET of the feed), and every entry becomes exactly one document.
"""

from __future__ import annotations

import signal
from collections import Counter
from datetime import timedelta

import pytest
import trio

from daemon.modules.audit import AuditContext
from daemon.modules.ingestion.address_policy import AddressPolicy
from daemon.modules.sources import SourcePolicy, check_source_input, create_source
from daemon.shared.db import open_pool
from tests.e2e.test_schedules_e2e import db_now, wait_ready
from tests.feed_server import FeedServer

pytestmark = pytest.mark.e2e

WINDOW_SECONDS = 8


async def polled_through(pool, source_id: int, end, timeout: float = 30.0) -> None:
    """Wait until every poll job of a slot before ``end`` has finished (a loaded machine
    may claim the last ones late)."""
    with trio.fail_after(timeout):
        while True:
            async with pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT count(*) FROM jobs WHERE queue = 'sources.poll'"
                        " AND payload->'_schedule'->>'name' = %s AND state <> 'completed'"
                        " AND (payload->'_schedule'->>'slot')::timestamptz < %s",
                        [f"source.{source_id}", end],
                    )
                ).fetchone()
            if row[0] == 0:
                return
            await trio.sleep(0.2)


async def test_three_workers_poll_each_slot_once_and_each_entry_once(start_triaged, database_url):
    server = FeedServer(entries=20).start()
    try:
        workers = [
            start_triaged(
                "worker", TRIAGED_FETCH_ALLOWED_NETWORKS="127.0.0.0/8", TRIAGED_LOG_LEVEL="DEBUG"
            )
            for _ in range(3)
        ]
        async with open_pool(database_url, max_size=2) as pool:
            await wait_ready(workers)  # the schema is migrated by then
            body = {"name": "alerts", "kind": "feed", "config": {"url": server.url("/feed.xml")},
                    "schedule": {"interval_seconds": 1}}  # fmt: skip
            policy = SourcePolicy(address=AddressPolicy(allowed_networks=("127.0.0.0/8",)))
            source = await create_source(
                pool, check_source_input(body, policy), context=AuditContext.system()
            )
            # Each worker re-reads the schedules every 2 s: the window starts after that.
            start = (await db_now(pool)).replace(microsecond=0) + timedelta(seconds=3)
            end = start + timedelta(seconds=WINDOW_SECONDS)
            await trio.sleep((start - await db_now(pool)).total_seconds() + WINDOW_SECONDS / 2)
            server.entries = 30
            await trio.sleep(max(0.0, (end - await db_now(pool)).total_seconds()) + 0.5)
            await polled_through(pool, source.id, end)
            for worker in workers:
                assert worker.proc.poll() is None, worker.output()
                worker.signal(signal.SIGTERM)
            codes = [await worker.wait_exit(timeout=30) for worker in workers]
            assert codes == [0, 0, 0], "\n".join(w.output()[-3000:] for w in workers)
            async with pool.connection() as conn:
                fired = await (
                    await conn.execute(
                        "SELECT id, (payload->'_schedule'->>'slot')::timestamptz FROM jobs"
                        " WHERE queue = 'sources.poll' AND payload->'_schedule'->>'name' = %s",
                        [f"source.{source.id}"],
                    )
                ).fetchall()
                polls = await (
                    await conn.execute(
                        "SELECT job_id, error FROM source_polls WHERE source_id = %s", [source.id]
                    )
                ).fetchall()
                documents = await (
                    await conn.execute(
                        "SELECT external_id FROM documents WHERE source_id = %s", [source.id]
                    )
                ).fetchall()
    finally:
        server.stop()

    slots = Counter(slot for _, slot in fired)
    assert [slot for slot, n in slots.items() if n > 1] == []  # no slot fired twice
    in_window = {job_id for job_id, slot in fired if start <= slot < end}
    assert len(in_window) == WINDOW_SECONDS
    polled = Counter(job_id for job_id, _ in polls)
    assert [job for job, n in polled.items() if n > 1] == []  # no job polled twice
    assert in_window <= set(polled), "a slot in the window was never polled"
    assert [error for _, error in polls if error] == []
    assert len(server.statuses("/feed.xml")) == len(polls)  # one GET per poll
    assert sorted(row[0] for row in documents) == sorted(f"id:entry-{i}" for i in range(30))
