"""The lists of documents and cases are built as JSON by the database (issue 16):
``DOCUMENT_VIEW_SQL`` and ``CASE_VIEW_SQL`` must give exactly what ``document_view`` and
``case_view`` give through ``json_response`` for the same rows, with every kind of
value: nulls, metadata, tags, whole-second and fractional times, a session in another
time zone."""

from __future__ import annotations

import json

import pytest

from daemon.api.responses import _default
from daemon.api.routes.cases import CASE_VIEW_SQL, case_view
from daemon.api.routes.documents import DOCUMENT_VIEW_SQL, document_view
from daemon.modules.cases import CaseFilter, list_case_views, list_cases
from daemon.modules.ingestion import (
    DocumentFilter,
    DocumentState,
    list_document_views,
    list_documents,
)
from tests.integration.test_case_opening import routed_case


def as_api_json(view: dict) -> object:
    """What json_response sends for a view, read back."""
    return json.loads(json.dumps(view, default=_default, ensure_ascii=False))


async def execute(pool, query, *params):
    async with pool.transaction() as conn:
        await conn.execute(query, params)


async def varied_rows(pool) -> None:
    """Three routed documents with cases, then values of every kind set on them."""
    first_doc, first_case = await routed_case(pool, " first")
    second_doc, second_case = await routed_case(pool, " second")
    await routed_case(pool, " third")
    await execute(
        pool,
        "UPDATE documents SET metadata = %s::jsonb, title = %s, created_at = %s WHERE id = %s",
        json.dumps({"z": [1, 2.5, None], "a": {"é": '\u2028"x\\'}, "n": True}),
        'Ünïcödé "quoted" \\ title',
        "2026-01-02 03:04:05+00",  # whole second: no fraction written
        first_doc,
    )
    await execute(
        pool,
        "UPDATE documents SET metadata = '{}', completed_at = NULL, sha256 = NULL, "
        "updated_at = '2026-05-06 07:08:09.5+02' WHERE id = %s",
        second_doc,
    )
    await execute(
        pool,
        "UPDATE cases SET tags = %s, status = 'resolved', resolution = 'fixed', "
        "resolution_note = 'done', resolved_at = now(), acknowledged_at = "
        "'2026-01-01 00:00:00.000001+00', escalation_level = 2, sla_due_at = NULL "
        "WHERE id = %s",
        ["one", "two words", "ü"],
        first_case,
    )
    await execute(
        pool,
        "UPDATE cases SET sla_due_at = now() - interval '1 hour', assignee = 'someone' "
        "WHERE id = %s",
        second_case,
    )


@pytest.mark.parametrize("time_zone", ["UTC", "America/St_Johns"])
async def test_the_database_views_are_the_python_views(pool, time_zone):
    await varied_rows(pool)
    async with pool.connection() as conn:
        await conn.execute(f"SET TIME ZONE '{time_zone}'")
        documents = await list_documents(conn, limit=2)
        document_views = await list_document_views(conn, DOCUMENT_VIEW_SQL, limit=2)
        cases = await list_cases(conn, limit=2)
        case_views = await list_case_views(conn, CASE_VIEW_SQL, limit=2)
        everything = await list_document_views(conn, DOCUMENT_VIEW_SQL, limit=50)
        all_cases = await list_case_views(conn, CASE_VIEW_SQL, limit=50)
        all_documents = await list_documents(conn, limit=50)
        all_case_rows = await list_cases(conn, limit=50)

    assert document_views.next_cursor == documents.next_cursor is not None
    assert case_views.next_cursor == cases.next_cursor is not None
    assert everything.next_cursor is None and all_cases.next_cursor is None
    assert [json.loads(item) for item in everything.items] == [
        as_api_json(document_view(d)) for d in all_documents.items
    ]
    assert [json.loads(item) for item in all_cases.items] == [
        as_api_json(case_view(c)) for c in all_case_rows.items
    ]
    # Key order too: the same object as json_response would write.
    assert [list(json.loads(item)) for item in all_cases.items] == [
        list(case_view(c)) for c in all_case_rows.items
    ]
    assert [list(json.loads(item)) for item in everything.items] == [
        list(document_view(d)) for d in all_documents.items
    ]
    written = {json.loads(item)["id"]: json.loads(item) for item in everything.items}
    assert any(d["created_at"] == "2026-01-02T03:04:05Z" for d in written.values())
    assert any(d["updated_at"] == "2026-05-06T05:08:09.500000Z" for d in written.values())


async def test_filtered_and_later_pages_are_the_same_rows(pool):
    await varied_rows(pool)
    filters = DocumentFilter(state=DocumentState.COMPLETED, text="second")
    async with pool.connection() as conn:
        for kwargs in ({}, {"filters": filters}):
            first = await list_documents(conn, limit=1, **kwargs)
            views = await list_document_views(conn, DOCUMENT_VIEW_SQL, limit=1, **kwargs)
            assert [json.loads(v)["id"] for v in views.items] == [d.id for d in first.items]
            assert views.next_cursor == first.next_cursor
            cursor = first.next_cursor or "999"
            rest = await list_documents(conn, limit=50, cursor=cursor, **kwargs)
            more = await list_document_views(
                conn, DOCUMENT_VIEW_SQL, limit=50, cursor=cursor, **kwargs
            )
            assert [json.loads(v)["id"] for v in more.items] == [d.id for d in rest.items]
        for case_filter in (CaseFilter(), CaseFilter(status="open")):
            cases = await list_cases(conn, case_filter, limit=1)
            views = await list_case_views(conn, CASE_VIEW_SQL, case_filter, limit=1)
            assert [json.loads(v)["id"] for v in views.items] == [c.id for c in cases.items]
            rest = await list_cases(conn, case_filter, cursor=cases.next_cursor, limit=9)
            more = await list_case_views(
                conn, CASE_VIEW_SQL, case_filter, cursor=cases.next_cursor, limit=9
            )
            assert [json.loads(v)["id"] for v in more.items] == [c.id for c in rest.items]
            assert rest.items
