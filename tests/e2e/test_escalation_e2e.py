"""Escalation and notifications end to end: real ``triaged`` processes, a real webhook
receiver on loopback that verifies every signature.

* 200 cases past due while three ``triaged worker`` processes run, one of them SIGKILLed
  in the middle of an escalation check (holding its batch's locks, blocked on a level's
  key the test holds): every case reaches its level with exactly one ``escalated``
  event, and every configured channel gets exactly one delivery per event (a delivery
  repeated by a retry keeps its id and counts once), none missing.
* The receiver down for a while (``TRIAGED_E2E_RECEIVER_DOWN_SECONDS``; the issue says
  60 s, the default here is 20 s to keep CI within its budget): every notification
  arrives once it is back, with valid signatures, and the API's p95 latency meanwhile
  stays within twice its idle value (floor 20 ms; both windows read at the same pace).
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest
import trio

from daemon.modules.ingestion import FetchPolicy
from daemon.modules.notifications import create_channel
from daemon.shared.db import migrate, open_pool
from daemon.shared.db.psycopg_trio import TrioConnection
from tests.e2e.process import analyst_key, free_port
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

SECRET = "e2e-signing-secret"
LOOPBACK = FetchPolicy(allowed_networks=("127.0.0.0/8",))
POLICY = {
    "high": {
        "levels": [
            {"after": "0s", "channels": ["ops"]},
            {"after": "1h", "channels": ["ops", "lead"]},
            {"after": "2h", "channels": ["ops"]},
        ]
    }
}
ENV = {
    "TRIAGED_ESCALATION_POLICY": json.dumps(POLICY),
    "TRIAGED_ESCALATION_CHECK_INTERVAL_SECONDS": "1",
    "TRIAGED_FETCH_ALLOWED_NETWORKS": "127.0.0.0/8",
    "TRIAGED_NOTIFICATION_BACKOFF_MAX_SECONDS": "2",
    "TRIAGED_NOTIFICATION_TIMEOUT_SECONDS": "5",
    "TRIAGED_QUEUE_LEASE_SECONDS": "5",
}
DOWN_SECONDS = float(os.environ.get("TRIAGED_E2E_RECEIVER_DOWN_SECONDS", "20"))
BLOCKED = (
    "SELECT application_name, query FROM pg_stat_activity"
    " WHERE datname = current_database() AND %s = ANY(pg_blocking_pids(pid))"
)


async def add_cases(pool, count: int, overdue_minutes: float) -> list[int]:
    async with pool.transaction() as conn:
        rows = await (
            await conn.execute(
                "WITH d AS (INSERT INTO documents (title) SELECT 'e2e ' || g"
                " FROM generate_series(1, %(n)s) g RETURNING id)"
                " INSERT INTO cases (document_id, severity, sla_due_at, escalation_due_at)"
                " SELECT d.id, 'high', now() - make_interval(secs => %(s)s),"
                " now() - make_interval(secs => %(s)s) FROM d ORDER BY d.id RETURNING id",
                {"n": count, "s": overdue_minutes * 60},
            )
        ).fetchall()
    return [row[0] for row in rows]


async def one(pool, sql: str, *args):
    async with pool.connection() as conn:
        return await (await conn.execute(sql, args)).fetchall()


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        await trio.sleep(0.25)


async def test_200_cases_three_workers_one_killed_mid_check(start_triaged, database_url):
    receiver = WebhookReceiver(SECRET).start()
    try:
        async with open_pool(database_url, max_size=4) as pool:
            await migrate.apply(pool)
            async with pool.transaction() as conn:
                for name in ("ops", "lead"):
                    await create_channel(
                        conn,
                        {
                            "name": name,
                            "kind": "webhook",
                            "config": {"url": receiver.url, "secret": SECRET},
                        },
                        LOOPBACK,
                    )
            level_two = await add_cases(pool, 50, 86)  # taken first (most overdue)
            [blocked_case] = await add_cases(pool, 1, 83)
            level_two += [blocked_case, *await add_cases(pool, 49, 80)]
            level_one = await add_cases(pool, 100, 0.2)

            # The test holds the key of the blocked case's level: the check that takes
            # its batch waits on it, in the middle of its transaction.
            holder = await TrioConnection.connect(database_url)
            try:
                await holder.execute(
                    "INSERT INTO case_escalations (case_id, cycle, level) VALUES (%s, 0, 2)",
                    (blocked_case,),
                )
                workers = [
                    start_triaged("worker", PGAPPNAME=f"esc-worker-{n}", **ENV) for n in range(3)
                ]
                victim = None
                with trio.move_on_after(60):
                    while victim is None:
                        for worker in workers:
                            assert worker.proc.poll() is None, worker.output()
                        rows = await one(pool, BLOCKED, holder.pgconn.backend_pid)
                        victim = next(
                            (app for app, q in rows if "case_escalations" in q and app), None
                        )
                        if victim is None:
                            await trio.sleep(0.1)
                assert victim is not None, "no worker's check blocked on the held level"
                killed = workers[int(victim.rsplit("-", 1)[1])]
                killed.signal(signal.SIGKILL)
                assert await killed.wait_exit(timeout=20) == -signal.SIGKILL
            finally:
                await holder.rollback()
                await holder.close()

            async def all_done() -> bool:
                [(events, pending)] = await one(
                    pool,
                    "SELECT (SELECT count(*) FROM case_events WHERE kind = 'escalated'),"
                    " (SELECT count(*) FROM notification_deliveries WHERE status <> 'delivered')",
                )
                return events == 200 and pending == 0

            await wait_for(all_done, 90, "every case escalated and every delivery delivered")

            levels = dict(await one(pool, "SELECT id, escalation_level FROM cases"))
            assert {levels[c] for c in level_one} == {1}
            assert {levels[c] for c in level_two} == {2}
            per_case = await one(
                pool,
                "SELECT case_id, count(*), min((detail->>'level')::int) FROM case_events"
                " WHERE kind = 'escalated' GROUP BY case_id",
            )
            assert len(per_case) == 200 and all(n == 1 for _, n, _ in per_case)
            deliveries = await one(
                pool,
                "SELECT nd.id::text, nd.case_id, ch.name FROM notification_deliveries nd"
                " JOIN notification_channels ch ON ch.id = nd.channel_id",
            )
            by_case: dict[int, list[str]] = {}
            for _, case_id, channel in deliveries:
                by_case.setdefault(case_id, []).append(channel)
            assert all(sorted(by_case[c]) == ["ops"] for c in level_one)
            assert all(sorted(by_case[c]) == ["lead", "ops"] for c in level_two)
            received = receiver.snapshot()
            assert all(r.valid for r in received)
            # Every delivery arrived; a repeat (a send whose outcome a crash lost) has
            # the same id and counts once.
            assert {r.delivery_id for r in received} == {d for d, _, _ in deliveries}
            assert len(deliveries) == 300
    finally:
        receiver.stop()


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * 0.95) - 1)]


async def test_receiver_down_then_back_gets_everything_and_the_api_stays_fast(
    start_triaged, database_url, tmp_path
):
    port = free_port()
    receiver = WebhookReceiver(SECRET, port=port)  # not started: down
    data_dir = tmp_path / "data"
    server = start_triaged(
        "serve",
        TRIAGED_INITIAL_ADMIN_PASSWORD_FILE=str(data_dir / "initial-admin-password"),
        # Enough attempts, at most 8 s apart, to outlast the outage.
        **(
            ENV
            | {
                "TRIAGED_NOTIFICATION_MAX_ATTEMPTS": "100",
                "TRIAGED_NOTIFICATION_BACKOFF_MAX_SECONDS": "8",
            }
        ),
    )
    await server.wait_ready(timeout=60)
    admin = await analyst_key(server.url, data_dir / "initial-admin-password", role="admin")
    headers = {"Authorization": f"Bearer {admin}"}
    try:
        async with (
            open_pool(database_url, max_size=4) as pool,
            httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client,
        ):
            created = await client.post(
                "/api/v1/notification-channels",
                json={
                    "name": "ops",
                    "kind": "webhook",
                    "events": ["opened"],
                    "config": {"url": receiver.url, "secret": SECRET},
                },
            )
            assert created.status_code == 201, created.text
            assert "secret" not in created.json()["config"]

            async def timed_get() -> float:
                started = time.perf_counter()
                response = await client.get("/api/v1/cases", params={"limit": 50})
                assert response.status_code == 200
                return time.perf_counter() - started

            # The list answers a full page in both windows: cases not yet due.
            await add_cases(pool, 60, -24 * 60)
            for _ in range(10):  # warm up
                await timed_get()
            idle: list[float] = []  # paced as the reads while the receiver is down
            for _ in range(100):
                idle.append(await timed_get())
                await trio.sleep(0.05)

            await add_cases(pool, 40, 0.2)
            down_until = time.monotonic() + DOWN_SECONDS
            busy: list[float] = []
            while time.monotonic() < down_until:
                busy.append(await timed_get())
                await trio.sleep(0.05)
            [(escalated, failed_tries)] = await one(
                pool,
                "SELECT (SELECT count(*) FROM case_events WHERE kind = 'escalated'),"
                " (SELECT coalesce(sum(attempts), 0) FROM notification_deliveries)",
            )
            assert escalated == 40  # the check was not held up by the channel
            assert failed_tries >= 40  # every delivery tried while the receiver was down
            receiver.start()

            async def delivered() -> bool:
                [(pending, failed)] = await one(
                    pool,
                    "SELECT count(*) FILTER (WHERE status = 'pending'),"
                    " count(*) FILTER (WHERE status = 'failed') FROM notification_deliveries",
                )
                assert failed == 0
                return pending == 0

            await wait_for(delivered, 60, "every delivery delivered once the receiver is back")
            ids = {d for (d,) in await one(pool, "SELECT id::text FROM notification_deliveries")}
            assert len(ids) == 40
            received = receiver.snapshot()
            assert {r.delivery_id for r in received} == ids
            assert all(r.valid for r in received)
            idle_p95, busy_p95 = p95(idle), p95(busy)
            print(
                f"\nAPI p95 idle {idle_p95 * 1000:.1f} ms, receiver down {busy_p95 * 1000:.1f} ms"
                f" ({len(busy)} requests over {DOWN_SECONDS:g} s)"
            )
            # the line: within twice the idle p95 (a 20 ms floor for a very fast
            # idle figure on a loaded machine)
            assert busy_p95 <= max(2 * idle_p95, 0.02), (idle_p95, busy_p95)
    finally:
        receiver.stop()
