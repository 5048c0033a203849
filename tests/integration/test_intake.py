"""Intake on a real database: concurrent intakes share transactions (group commit), yet
each gets its own document, history, audit event and first job, and a refused one
fails alone."""

from __future__ import annotations

import psycopg
import trio

from daemon.modules.audit import AuditContext
from daemon.modules.ingestion import IntakeWriter, NewDocument, receive_document

SYSTEM = AuditContext.system()


async def intake(writer, **fields):
    return await receive_document(
        writer,
        NewDocument(**fields),
        context=SYSTEM,
        max_bytes=1 << 20,
        max_attempts=5,
    )


async def test_concurrent_intakes_share_commits_and_each_gets_its_rows(pool):
    writer = IntakeWriter(pool)
    receipts = {}

    async def one(i: int) -> None:
        receipts[i] = await intake(writer, title=f"doc {i}", content=f"text {i}".encode())

    async with trio.open_nursery() as nursery:
        for i in range(40):
            nursery.start_soon(one, i)
    assert len({r.id for r in receipts.values()}) == 40
    assert writer.batches < 40  # some intakes shared a transaction
    ids = [receipts[i].id for i in range(40)]
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT d.id, d.title, convert_from(b.data, 'UTF8'), "
                "(SELECT count(*) FROM document_events e WHERE e.document_id = d.id), "
                "(SELECT count(*) FROM jobs j WHERE j.queue = 'ingest.fetch' "
                " AND j.payload->>'document_id' = d.id::text), "
                "(SELECT count(*) FROM audit_events a WHERE a.action = 'document.created' "
                " AND a.target_id = d.id::text) "
                "FROM documents d JOIN document_blobs b ON b.document_id = d.id "
                "WHERE d.id = ANY(%s)",
                (ids,),
            )
        ).fetchall()
    by_id = {row[0]: row[1:] for row in rows}
    for i in range(40):
        assert by_id[receipts[i].id] == (f"doc {i}", f"text {i}", 1, 1, 1)


async def test_a_refused_intake_fails_alone_in_its_group(pool):
    writer = IntakeWriter(pool)
    results: dict[int, object] = {}

    async def one(i: int) -> None:
        # A title over the column's 1,000 characters: the database refuses that row.
        title = "x" * 1001 if i == 3 else f"fine {i}"
        try:
            results[i] = await intake(writer, title=title, content=b"some text")
        except psycopg.Error as exc:
            results[i] = exc

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(one, i)
    assert isinstance(results[3], psycopg.errors.CheckViolation)
    fine = [r for i, r in results.items() if i != 3]
    assert all(not isinstance(r, Exception) for r in fine)
    async with pool.connection() as conn:
        count = await (
            await conn.execute(
                "SELECT count(*) FROM documents WHERE id = ANY(%s)", ([r.id for r in fine],)
            )
        ).fetchone()
    assert count == (7,)


async def test_url_and_empty_intakes_in_one_group(pool):
    writer = IntakeWriter(pool)
    receipts = {}

    async def one(name: str, fields: dict) -> None:
        receipts[name] = await intake(writer, title=name, **fields)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "url", {"url": "https://example.org/a?b=1"})
        nursery.start_soon(one, "empty", {"content": b""})
        nursery.start_soon(one, "text", {"content": b"words"})
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT d.title, d.url, d.size_bytes, b.data IS NOT NULL "
                "FROM documents d LEFT JOIN document_blobs b ON b.document_id = d.id "
                "WHERE d.id = ANY(%s) ORDER BY d.title",
                ([r.id for r in receipts.values()],),
            )
        ).fetchall()
    assert rows == [
        ("empty", None, 0, True),
        ("text", None, 5, True),
        ("url", "https://example.org/a?b=1", None, False),
    ]

