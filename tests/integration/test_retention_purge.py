"""The retention purge on a real database: exactly the expired, unheld rows go, with
everything that depends on them; holds keep what they cover until released; the run's
report counts what it did; the same content can be ingested again afterwards."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from daemon.composition import compose, pipeline_config, retention_config
from daemon.modules.audit import AuditContext
from daemon.modules.ingestion import IntakeWriter, NewDocument, Pipeline, receive_document
from daemon.modules.ingestion.states import STEPS
from daemon.modules.retention import (
    BatchLimits,
    Kind,
    due,
    list_holds,
    place_hold,
    release_hold,
    run_purge,
)
from daemon.shared.config import Settings
from daemon.shared.cpu_threads import CpuThreads
from tests.integration.retention_seed import expected, held_documents, seed

SYSTEM = AuditContext.system()
CPU = CpuThreads(2, name="test-retention")
INCIDENT = (
    "Ransomware attack detected on the mail gateway. Attackers exploited CVE-2024-3400 "
    "and exfiltrated credentials."
)


async def new_document(pool, title: str) -> int:
    receipt = await receive_document(
        IntakeWriter(pool),
        NewDocument(title=title, content=INCIDENT.encode()),
        context=SYSTEM,
        max_bytes=1 << 20,
        max_attempts=5,
    )
    return receipt.id


async def state_of(pool, document_id: int) -> str:
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT state::text FROM documents WHERE id = %s", (document_id,))
        ).fetchone()
    return row[0]


def config(**settings):
    return retention_config(Settings(retention_document_history_days=36_500, **settings))


async def remaining(pool, table: str, column: str = "document_id") -> set[int]:
    async with pool.connection() as conn:
        rows = await (await conn.execute(f"SELECT {column} FROM {table}")).fetchall()
    return {r[0] for r in rows}


async def test_one_run_deletes_exactly_the_expired_unheld_documents_and_their_data(pool):
    n = 50_000
    await seed(pool, n)
    cfg = config()
    want = expected(n)
    before = await due(pool, cfg)
    assert before[Kind.COMPLETED_DOCUMENTS].due == want.deleted["completed_documents"]

    started = time.monotonic()
    report = await run_purge(pool, cfg)
    elapsed = time.monotonic() - started

    documents = await remaining(pool, "documents", "id")
    assert set(range(1, n + 1)) - documents == want.gone
    for table in ("document_blobs", "document_texts", "document_events", "analyses"):
        left = await remaining(pool, table)
        assert not left & want.gone, table
        assert left <= documents
    assert len(await remaining(pool, "document_blobs")) == len(documents)
    hashes = await remaining(pool, "document_hashes")
    assert not hashes & want.gone
    assert len(hashes) == len([i for i in documents if i % 10 != 8])
    cases = await remaining(pool, "cases")
    assert not cases & want.cases_gone
    assert {i for i in range(1, n + 1) if i % 10 <= 5 and i % 3 == 0} - cases == want.cases_gone
    async with pool.connection() as conn:
        case_rows = await (
            await conn.execute(
                "SELECT (SELECT count(*) FROM cases), (SELECT count(*) FROM case_events), "
                "(SELECT count(*) FROM case_comments)"
            )
        ).fetchone()
    assert case_rows == (len(cases), len(cases), len(cases))  # their history went with them
    async with pool.connection() as conn:
        dangling = await (
            await conn.execute(
                "SELECT count(*) FROM documents WHERE state = 'duplicate' AND duplicate_of IS NULL"
            )
        ).fetchone()
    # Duplicates of purged originals lose the link (ON DELETE SET NULL), nothing else.
    assert dangling[0] == len([i for i in documents if i % 10 == 8 and i - 1 in want.gone])

    for kind, count in want.deleted.items():
        assert report.report[kind]["deleted"] == count, kind
        assert report.report[kind]["held"] == want.held.get(kind, 0), kind
    # What `retention status` / `run --dry-run` said beforehand is what the run did.
    for kind, counts in before.items():
        assert report.report[kind.value]["deleted"] == counts.due, kind
        assert report.report[kind.value]["held"] == counts.held, kind
    assert report.finished_at is not None
    assert elapsed < 60, f"the purge of {n} documents took {elapsed:.1f} s"

    # A second run finds nothing more.
    again = await run_purge(pool, cfg)
    assert all(counts["deleted"] == 0 for counts in again.report.values())


async def test_a_released_hold_lets_its_data_go_at_the_next_run(pool):
    n = 2_000
    await seed(pool, n)
    cfg = config()
    await run_purge(pool, cfg)
    # Document 485 (completed, expired, no case, held) survived.
    documents = await remaining(pool, "documents", "id")
    assert 485 in documents
    assert 485 in expected(n, released=frozenset({485})).gone
    async with pool.connection() as conn:
        holds = await list_holds(conn, target_type="document", target_id=485)
    [hold] = holds.items
    released = await release_hold(pool, hold.id, reason="case closed", context=SYSTEM)
    assert released.released_at is not None
    report = await run_purge(pool, cfg)
    documents_after = await remaining(pool, "documents", "id")
    assert documents - documents_after == {485}
    assert report.report["completed_documents"]["deleted"] == 1


async def test_a_hold_placed_now_keeps_an_expired_document_and_its_case(pool):
    n = 300
    await seed(pool, n)
    cfg = config()
    target = 30  # completed, expired (30 % 7 < 4), its case resolved long ago
    assert target in expected(n).gone
    async with pool.connection() as conn:
        case_id = (
            await (
                await conn.execute("SELECT id FROM cases WHERE document_id = %s", (target,))
            ).fetchone()
        )[0]
    await place_hold(pool, target_type="case", target_id=case_id, reason="lawsuit", context=SYSTEM)
    await run_purge(pool, cfg)
    assert target in await remaining(pool, "documents", "id")
    assert target in await remaining(pool, "cases")
    assert target in await remaining(pool, "document_blobs")


async def test_a_changed_period_applies_to_existing_documents(pool):
    n = 300
    await seed(pool, n)
    # Recent documents finished 10 days ago: kept with the defaults, gone with 5 days.
    await run_purge(pool, config())
    recent_completed = {
        i for i in await remaining(pool, "documents", "id") if i % 10 == 0 and i % 7 >= 4
    }
    assert recent_completed
    short = compose(
        Settings(document_retention_days=5, retention_document_history_days=36_500)
    ).purge
    assert short.periods.of(Kind.COMPLETED_DOCUMENTS) == timedelta(days=5)
    await run_purge(pool, short)
    left = await remaining(pool, "documents", "id")
    # Those with an open case or a hold stay; every other one went.
    cases = await remaining(pool, "cases")
    assert {i for i in recent_completed if i not in cases and i % 97} & left == set()


async def test_history_past_its_period_goes_but_not_a_held_documents(pool):
    n = 600
    await seed(pool, n)
    cfg = retention_config(Settings(retention_document_history_days=100))
    report = await run_purge(pool, cfg)
    events = await remaining(pool, "document_events")
    documents = await remaining(pool, "documents", "id")
    # Every old event went except those of held documents (held, of a held case, the
    # original of a held duplicate); recent ones stay.
    old = {i for i in range(1, n + 1) if i % 7 < 4 and i % 10 != 9}
    assert old & events == old & held_documents(n) == {303, 387, 388, 485, 582}
    assert events >= {i for i in documents if i not in old}
    assert report.report["document_history"]["deleted"] > 0


async def test_small_batches_commit_separately_and_count_the_same(pool):
    n = 1_000
    await seed(pool, n)
    cfg = config(retention_batch_rows=7)
    assert cfg.batch == BatchLimits(rows=7, seconds=5.0)
    report = await run_purge(pool, cfg)
    want = expected(n)
    assert set(range(1, n + 1)) - await remaining(pool, "documents", "id") == want.gone
    for kind, count in want.deleted.items():
        assert report.report[kind]["deleted"] == count, kind


async def test_the_same_content_can_be_ingested_again_after_its_document_was_purged(pool):
    runner = Pipeline(pool, pipeline_config(compose(Settings(), cpu=CPU)))
    first = await new_document(pool, "first")
    for step in STEPS:
        await runner.run_step(step, first)
    duplicate = await new_document(pool, "again")
    for step in STEPS[:2]:
        await runner.run_step(step, duplicate)
    async with pool.transaction() as conn:
        row = await (
            await conn.execute(
                "SELECT d.state::text, d.finished_at IS NOT NULL, o.finished_at IS NOT NULL "
                "FROM documents d, documents o WHERE d.id = %s AND o.id = %s",
                (duplicate, first),
            )
        ).fetchone()
        assert row == ("duplicate", True, True)  # the trigger set both deadlines' start
        # Both finished long ago; the first one's case resolved long ago.
        await conn.execute(
            "UPDATE documents SET finished_at = now() - interval '400 days' WHERE id IN (%s, %s)",
            (first, duplicate),
        )
        await conn.execute(
            "UPDATE cases SET status = 'resolved', resolved_at = now() - interval '400 days' "
            "WHERE document_id = %s",
            (first,),
        )
    report = await run_purge(pool, config())
    assert report.report["completed_documents"]["deleted"] == 1
    assert report.report["duplicate_documents"]["deleted"] == 1
    assert await remaining(pool, "document_hashes") == set()
    again = await new_document(pool, "once more")
    for step in STEPS[:2]:
        await runner.run_step(step, again)
    assert await state_of(pool, again) == "hashed"  # new content again, not a duplicate


async def test_a_retried_purge_job_continues_its_run(pool):
    n = 300
    await seed(pool, n)
    cfg = config()
    first = await run_purge(pool, cfg, job_id=4242)
    again = await run_purge(pool, cfg, job_id=4242)  # the same job delivered again
    assert again.id == first.id and again.trigger == "schedule"
    # Its counts add up over both deliveries: nothing counted twice.
    for kind, count in expected(n).deleted.items():
        assert again.report[kind]["deleted"] == count, kind
    other = await run_purge(pool, cfg, job_id=4243)
    assert other.id != first.id


async def test_finished_at_follows_the_state_whoever_writes_it(pool):
    async with pool.transaction() as conn:

        async def move(state: str):
            row = await (
                await conn.execute(
                    "UPDATE documents SET state = %s::document_state WHERE id = %s "
                    "RETURNING finished_at",
                    (state, document_id),
                )
            ).fetchone()
            return row[0]

        document_id = (
            await (
                await conn.execute("INSERT INTO documents (title) VALUES ('t') RETURNING id")
            ).fetchone()
        )[0]
        assert await move("fetched") is None  # working: no deadline
        failed_at = await move("failed")
        assert failed_at is not None  # terminal: the deadline starts
        assert await move("failed") == failed_at  # same state again: unchanged
        assert await move("extracted") is None  # retried: back in the pipeline
        assert await move("completed") is not None


async def test_a_purge_warns_while_checkpoints_are_signed_with_the_installation_key(pool, caplog):
    caplog.set_level(logging.WARNING, logger="triaged.retention")
    await run_purge(pool, config())
    unset = [
        r for r in caplog.records if r.__dict__.get("action") == "retention.checkpoint_key_unset"
    ]
    assert len(unset) == 1
    assert "TRIAGED_AUDIT_CHECKPOINT_KEY is not set" in unset[0].getMessage()
    caplog.clear()
    await run_purge(pool, config(audit_checkpoint_key="a key of some good length"))
    assert not [r for r in caplog.records if "CHECKPOINT_KEY" in r.getMessage()]
