"""Routing opens a case with its history and escalation ladder started; a reanalysis
that routes the document more severely raises its case (never lowers it)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from daemon.modules.audit import AuditContext
from daemon.modules.cases import get_case, record_case_event
from daemon.modules.ingestion import reanalyze_document
from daemon.modules.ingestion.states import STEPS, step_named
from tests.integration.test_pipeline import INCIDENT, new_document, pipeline


async def routed_case(pool, marker: str = "") -> tuple[int, int]:
    """A document routed to a case (``marker`` makes its text unlike the others')."""
    runner = pipeline(pool)
    document_id = await new_document(pool, INCIDENT + marker)
    for step in STEPS:
        await runner.run_step(step, document_id)
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT id FROM cases WHERE document_id = %s", (document_id,))
        ).fetchone()
    return document_id, row[0]


async def events(pool, case_id):
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT kind, actor, detail FROM case_events WHERE case_id = %s ORDER BY id",
                (case_id,),
            )
        ).fetchall()
    return rows


async def test_routing_opens_a_case_with_its_event_and_ladder(pool):
    _, case_id = await routed_case(pool)
    async with pool.connection() as conn:
        case = await get_case(conn, case_id)
    assert (case.status, case.severity, case.category) == ("open", "critical", "security")
    assert case.version == 1 and case.escalation_level == 0
    assert case.escalation_due_at == case.sla_due_at is not None
    assert case.acknowledged_at is None and case.resolved_at is None
    [(kind, actor, detail)] = await events(pool, case_id)
    assert (kind, actor, detail["severity"]) == ("opened", "system", "critical")


async def test_every_update_bumps_the_version_and_events_are_append_only(pool):
    _, case_id = await routed_case(pool)
    async with pool.transaction() as conn:
        await conn.execute("UPDATE cases SET category = 'legal' WHERE id = %s", (case_id,))
        await record_case_event(conn, case_id, "commented", "user:1", {"comment_id": 1})
    async with pool.connection() as conn:
        case = await get_case(conn, case_id)
        assert case.version == 2
        with pytest.raises(psycopg.Error, match="append-only"):
            await conn.execute("UPDATE case_events SET actor = 'x' WHERE case_id = %s", (case_id,))
    assert [k for k, _, _ in await events(pool, case_id)] == ["opened", "commented"]


async def reanalyze(pool, document_id):
    runner = pipeline(pool)
    await reanalyze_document(pool, document_id, context=AuditContext.system(), max_attempts=5)
    for name in ("analyze", "route", "complete"):
        await runner.run_step(step_named(name), document_id)


async def test_a_more_severe_reanalysis_raises_the_case_and_its_deadline(pool):
    document_id, case_id = await routed_case(pool)
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE cases SET severity = 'medium', sla_due_at = now() + interval '3 days', "
            "escalation_due_at = now() + interval '3 days' WHERE id = %s",
            (case_id,),
        )
        before = await get_case(conn, case_id)
    await reanalyze(pool, document_id)
    async with pool.connection() as conn:
        after = await get_case(conn, case_id)
    assert after.severity == "critical"
    assert after.sla_due_at < before.sla_due_at - timedelta(days=2)  # critical: 1 h
    assert after.escalation_due_at == after.sla_due_at
    kinds = [(k, d.get("from"), d.get("to")) for k, _, d in await events(pool, case_id)]
    assert kinds[-1] == ("severity_raised", "medium", "critical")


async def test_a_reanalysis_never_lowers_a_case(pool):
    document_id, case_id = await routed_case(pool)
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE cases SET severity = 'critical', sla_due_at = now() + interval '5 minutes'"
            " WHERE id = %s",
            (case_id,),
        )
        before = await get_case(conn, case_id)
    await reanalyze(pool, document_id)  # the heuristic says critical again: not higher
    async with pool.connection() as conn:
        after = await get_case(conn, case_id)
    assert (after.severity, after.sla_due_at) == ("critical", before.sla_due_at)
    assert "severity_raised" not in [k for k, _, _ in await events(pool, case_id)]


async def test_migration_0011_backfills_the_cases_opened_before(database_url):
    from daemon.shared.db import migrate, open_pool

    before = [m for m in migrate.discover() if m.version < 11]
    async with open_pool(database_url, max_size=2) as pool:
        await migrate.apply(pool, before)
        async with pool.transaction() as conn:
            await conn.execute(
                "INSERT INTO users (email, role, password_hash) VALUES "
                "('Lead@example.org', 'analyst', 'x'), ('viewer@example.org', 'viewer', 'x')"
            )
            await conn.execute(
                "INSERT INTO documents (title, category) VALUES ('a', 'legal'), ('b', 'privacy')"
            )
            await conn.execute(
                "INSERT INTO cases (document_id, status, severity, sla_due_at, assignee) "
                "SELECT id, s::case_status, 'high', now() + interval '1 hour', who FROM ("
                "  VALUES ('a', 'open', 'lead@example.org'),"
                "         ('b', 'acknowledged', 'viewer@example.org')) v(t, s, who) "
                "JOIN documents d ON d.title = v.t"
            )
        await migrate.apply(pool)
        async with pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT d.title, c.category, c.assignee_user_id IS NOT NULL, c.version,"
                    " c.escalation_due_at = c.sla_due_at, c.acknowledged_at IS NOT NULL,"
                    " (SELECT array_agg(kind) FROM case_events e WHERE e.case_id = c.id)"
                    " FROM cases c JOIN documents d ON d.id = c.document_id ORDER BY d.title"
                )
            ).fetchall()
    assert rows == [
        ("a", "legal", True, 1, True, False, ["opened"]),
        ("b", "privacy", False, 1, None, True, ["opened"]),  # a viewer is not an assignee
    ]


async def test_a_routing_assignee_that_is_an_analysts_email_assigns_the_user(pool):
    async with pool.transaction() as conn:
        row = await (
            await conn.execute(
                "INSERT INTO users (email, role, password_hash) "
                "VALUES ('SecOps@example.org', 'analyst', 'x') RETURNING id"
            )
        ).fetchone()
    runner = pipeline(pool, routing_rules='{"assignees": {"security": "secops@example.org"}}')
    document_id = await new_document(pool)
    for step in STEPS:
        await runner.run_step(step, document_id)
    async with pool.connection() as conn:
        case_id = (
            await (
                await conn.execute("SELECT id FROM cases WHERE document_id = %s", (document_id,))
            ).fetchone()
        )[0]
        case = await get_case(conn, case_id)
    assert (case.assignee, case.assignee_user_id) == ("secops@example.org", row[0])
    [(_, _, detail)] = await events(pool, case_id)
    assert detail["assignee_user_id"] == row[0]
