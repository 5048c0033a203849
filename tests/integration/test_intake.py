"""Intake on a real database: concurrent intakes share transactions (group commit), yet
each gets its own document, history, audit event and first job, and a refused one
fails alone. An Idempotency-Key is its principal's own, and requests racing with one key
make one document."""

from __future__ import annotations

import httpx
import psycopg
import trio

from daemon.modules.audit import AuditContext
from daemon.modules.ingestion import IntakeWriter, NewDocument, receive_document
from tests.integration.api_server import bearer

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


# -- Idempotency-Key, as the client sees it ----------------------------------------------


async def documents_titled(pool, title: str) -> list[int]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT id FROM documents WHERE title = %s ORDER BY id", (title,))
        ).fetchall()
    return [row[0] for row in rows]


async def test_a_key_reused_by_a_second_principal_is_that_principals_own(api):
    first, second = bearer(await api.token()), bearer(await api.token())
    body = {"title": "shared key", "content": "the same request, by two people"}
    key = {"Idempotency-Key": "shared-1"}
    async with api.client(headers=first) as one, api.client(headers=second) as other:
        mine = await one.post("/api/v1/documents", json=body, headers=key)
        theirs = await other.post("/api/v1/documents", json=body, headers=key)
        # The second principal's key is its own: another request with it is not a
        # conflict with the first principal's, and each replays only its own receipt.
        theirs_changed = await other.post(
            "/api/v1/documents", json={**body, "title": "changed"}, headers=key
        )
        mine_again = await one.post("/api/v1/documents", json=body, headers=key)
        theirs_again = await other.post("/api/v1/documents", json=body, headers=key)
    assert mine.status_code == theirs.status_code == 202
    assert "idempotent-replayed" not in mine.headers
    assert "idempotent-replayed" not in theirs.headers  # a new document, not a replay
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs_changed.status_code == 422  # its own key, used with another request
    assert mine_again.json() == mine.json() and mine_again.headers["idempotent-replayed"] == "true"
    assert theirs_again.json() == theirs.json()
    assert theirs_again.headers["idempotent-replayed"] == "true"
    assert await documents_titled(api.pool, "shared key") == sorted(
        [mine.json()["id"], theirs.json()["id"]]
    )


async def _race_on_one_key(api, bodies: list[dict]) -> list[httpx.Response]:
    """Post ``bodies`` at once with one Idempotency-Key, made to meet at the key: the key
    table is locked until every request waits to store its key, then they all go."""
    token = bearer(await api.token())
    responses: dict[int, httpx.Response] = {}

    async def post(client: httpx.AsyncClient, i: int) -> None:
        responses[i] = await client.post(
            "/api/v1/documents", json=bodies[i], headers={"Idempotency-Key": "raced"}
        )

    # Not one `with`: the lock must go while the nursery still waits for the posts.
    async with api.client(headers=token) as client, trio.open_nursery() as nursery:  # noqa: SIM117
        async with api.pool.transaction() as blocker:
            await blocker.execute("LOCK TABLE idempotency_keys IN SHARE MODE")
            for i in range(len(bodies)):
                nursery.start_soon(post, client, i)
            with trio.fail_after(60):  # generous: a loaded machine
                while await _waiting_for_keys(api.pool) < len(bodies):
                    await trio.sleep(0.05)
        # The lock is gone: the requests insert their keys at once.
    return [responses[i] for i in range(len(bodies))]


async def _waiting_for_keys(pool) -> int:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FROM pg_locks "
                "WHERE relation = 'idempotency_keys'::regclass AND NOT granted"
            )
        ).fetchone()
    return int(row[0])


async def test_requests_racing_with_one_key_make_one_document(api):
    body = {"title": "raced", "content": "sent five times at once"}
    responses = await _race_on_one_key(api, [body] * 5)
    assert [r.status_code for r in responses] == [202] * 5
    assert len({r.json()["id"] for r in responses}) == 1  # every client: the same receipt
    replayed = [r.headers.get("idempotent-replayed") for r in responses]
    assert sorted(replayed, key=str) == [None] + ["true"] * 4  # one wrote it, four replay it
    document_id = responses[0].json()["id"]
    assert await documents_titled(api.pool, "raced") == [document_id]
    async with api.pool.connection() as conn:
        jobs = await (
            await conn.execute(
                "SELECT count(*) FROM jobs WHERE queue = 'ingest.fetch' "
                "AND payload->>'document_id' = %s",
                (str(document_id),),
            )
        ).fetchone()
    assert jobs == (1,)


async def test_different_requests_racing_with_one_key_one_wins_the_others_conflict(api):
    bodies = [{"title": f"raced {i}", "content": f"request number {i}"} for i in range(4)]
    responses = await _race_on_one_key(api, bodies)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202, 422, 422, 422]
    winner = next(i for i, r in enumerate(responses) if r.status_code == 202)
    assert all("Idempotency-Key" in r.json()["detail"] for r in responses if r.status_code == 422)
    for i in range(4):
        expected = [responses[winner].json()["id"]] if i == winner else []
        assert await documents_titled(api.pool, f"raced {i}") == expected
