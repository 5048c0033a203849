"""Reading and operating documents: show (with history, analyses and case), list with
filters and a cursor, retry a failed one, reanalyse, delete.

Operator actions (retry, reanalyse, delete) each run in one transaction with their
audit event and, for retry and reanalyse, the job that restarts the pipeline.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs
import psycopg
from psycopg import sql

from daemon.modules.audit import record
from daemon.modules.cases import Case, case_of_document_query
from daemon.modules.ingestion.errors import DocumentNotFound
from daemon.modules.ingestion.states import (
    DocumentState,
    reanalyze_target,
    retry_target,
    step_from,
)
from daemon.modules.ingestion.store import SQL, record_event
from daemon.modules.retention import LEGAL_HOLD_SQLSTATE, UnderLegalHold
from daemon.queue import enqueue
from daemon.shared.errors import ValidationFailed
from daemon.shared.pagination import Page, decode_cursor, fetch_limit, page_of

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from daemon.modules.audit import AuditContext
    from daemon.modules.ingestion.states import Step
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

MAX_LIST_LIMIT = 500

log = logging.getLogger("triaged.ingestion")


@attrs.frozen(kw_only=True)
class Document:
    id: int
    title: str
    source_id: int
    external_id: str | None
    url: str | None
    filename: str | None
    media_type: str | None
    size_bytes: int | None
    sha256: str | None
    state: DocumentState
    failed_step: str | None
    error: str | None
    duplicate_of: int | None
    metadata: dict[str, Any]
    language: str | None
    category: str | None
    severity: str | None
    analysis_id: int | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    retain_until: datetime | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Document:
        fields = [f.name for f in attrs.fields(cls)]
        values = dict(zip(fields, row, strict=True))
        values["state"] = DocumentState(values["state"])
        values["metadata"] = dict(values["metadata"] or {})
        return cls(**values)


@attrs.frozen(kw_only=True)
class HistoryEvent:
    at: datetime
    from_state: str | None
    to_state: str
    step: str | None
    detail: dict[str, Any]


@attrs.frozen(kw_only=True)
class AnalysisRecord:
    id: int
    run: int
    category: str
    severity: str
    summary: str
    entities: list[dict[str, Any]]
    confidence: float
    rationale: str | None
    provider: str
    model: str
    version: str
    latency_ms: float
    calls: int
    repair_rounds: int
    prompt_tokens: int | None
    completion_tokens: int | None
    chunked: bool
    truncated: bool
    created_at: datetime


@attrs.frozen(kw_only=True)
class DocumentDetails:
    document: Document
    history: list[HistoryEvent]
    analyses: list[AnalysisRecord]  # oldest first; the current one is document.analysis_id
    case: Case | None


@attrs.frozen(kw_only=True)
class DocumentFilter:
    """Every field left None matches everything."""

    state: DocumentState | None = None
    source_id: int | None = None
    category: str | None = None
    severity: str | None = None
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until
    text: str | None = None  # in the title or the normalized text, ignoring case


DocumentPage = Page[Document]  # a page of documents; ``items`` newest first


def document_filter_sql(filters: DocumentFilter) -> tuple[sql.SQL, dict[str, Any]]:
    """The SQL predicate of ``filters`` over ``documents d`` and its parameters.

    The one translation of a :class:`DocumentFilter` to SQL: the list and the CSV
    export both use it, so a filter means the same rows in both. The parameter names
    are those of the ``document_filter`` query (``before_id`` and ``limit`` are free).
    """
    pattern = None
    if filters.text:
        escaped = filters.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
    params = {
        "state": None if filters.state is None else filters.state.value,
        "source_id": filters.source_id,
        "category": filters.category,
        "severity": filters.severity,
        "since": filters.since,
        "until": filters.until,
        "pattern": pattern,
    }
    return sql.SQL(SQL["document_filter"]), params


async def get_document(conn: TrioConnection, document_id: int) -> Document:
    """Raises DocumentNotFound."""
    row = await (await conn.execute(SQL["get_document"], {"id": document_id})).fetchone()
    if row is None:
        raise DocumentNotFound(f"no document with id {document_id}")
    return Document.from_row(row)


async def document_details(conn: TrioConnection, document_id: int) -> DocumentDetails:
    """The document with its history, analyses and case. Raises DocumentNotFound.

    Its four reads go to the server in one round trip (a pipeline). On a connection in
    autocommit they run in a read-only transaction of their own, also sent in that round
    trip (one snapshot, and nothing left to roll back); otherwise in the caller's.
    """
    own = conn.autocommit
    async with conn.pipeline():
        if own:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        found = await conn.execute(SQL["get_document"], {"id": document_id})
        events = await conn.execute(SQL["document_history"], {"id": document_id})
        runs = await conn.execute(SQL["document_analyses"], {"id": document_id})
        case_row = await conn.execute(*case_of_document_query(document_id))
        if own:
            await conn.execute("COMMIT")
    row = await found.fetchone()
    if row is None:
        raise DocumentNotFound(f"no document with id {document_id}")
    history = [
        HistoryEvent(at=at, from_state=a, to_state=b, step=step, detail=detail)
        for at, a, b, step, detail in await events.fetchall()
    ]
    fields = [f.name for f in attrs.fields(AnalysisRecord)]
    analyses = [
        AnalysisRecord(**dict(zip(fields, row, strict=True))) for row in await runs.fetchall()
    ]
    case = await case_row.fetchone()
    return DocumentDetails(
        document=Document.from_row(row),
        history=history,
        analyses=analyses,
        case=None if case is None else Case.from_row(case),
    )


def _page_start(cursor: str | None, limit: int) -> int | None:
    """The id a list page starts below (None: the first page).

    Raises:
        ValidationFailed: a malformed cursor or a limit outside 1..MAX_LIST_LIMIT.
    """
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValidationFailed(
            [{"field": "limit", "message": f"must be between 1 and {MAX_LIST_LIMIT}"}]
        )
    return decode_cursor(cursor)


async def list_documents(
    conn: TrioConnection,
    *,
    filters: DocumentFilter | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> DocumentPage:
    """Documents newest first; ``cursor`` is the previous page's ``next_cursor``.

    Raises:
        ValidationFailed: a malformed cursor or a limit outside 1..MAX_LIST_LIMIT.
    """
    before_id = _page_start(cursor, limit)
    predicate, params = document_filter_sql(filters or DocumentFilter())
    rows = await (
        await conn.execute(
            sql.SQL(SQL["list_documents"]).format(filter=predicate),
            {**params, "before_id": before_id, "limit": fetch_limit(limit)},
            prepare=False,  # a generic plan cannot use the filters' indexes
        )
    ).fetchall()
    return page_of([Document.from_row(row) for row in rows], limit, key=lambda d: d.id)


async def list_document_views(
    conn: TrioConnection,
    view: sql.Composable,
    *,
    filters: DocumentFilter | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[str]:
    """:func:`list_documents`, each item the JSON text of ``view`` (an SQL expression over
    ``documents d``), built by the server: no row is loaded into Python objects.

    Raises:
        ValidationFailed: a malformed cursor or a limit outside 1..MAX_LIST_LIMIT.
    """
    before_id = _page_start(cursor, limit)
    filters = filters or DocumentFilter()
    if filters == DocumentFilter():
        # No filter: a plain scan of the primary key, whose generic plan is the custom
        # one; prepared (after psycopg's threshold), it is planned once per connection.
        predicate, params, prepare = sql.SQL("TRUE"), {}, None
    else:
        predicate, params = document_filter_sql(filters)
        prepare = False  # a generic plan cannot use the filters' indexes
    after = sql.SQL("" if before_id is None else "AND d.id < %(before_id)s")
    rows = await (
        await conn.execute(
            sql.SQL(SQL["list_document_views"]).format(
                filter=predicate, view=view, after=after, limit=sql.Literal(fetch_limit(limit))
            ),
            {**params, "before_id": before_id},
            prepare=prepare,
        )
    ).fetchall()
    page = page_of(rows, limit, key=lambda row: int(row[0]))
    return Page(items=[row[1] for row in page.items], next_cursor=page.next_cursor)


async def retry_document(
    pool: Pool, document_id: int, *, context: AuditContext, max_attempts: int
) -> Document:
    """Restart a failed document at the step it failed in.

    Raises:
        DocumentNotFound.
        InvalidTransition: the document is not failed.
    """
    return await _restart(pool, document_id, "retry", context, max_attempts)


async def reanalyze_document(
    pool: Pool,
    document_id: int,
    *,
    context: AuditContext,
    max_attempts: int,
    analyzer: Mapping[str, str] | None = None,
) -> Document:
    """Run analysis and routing again (a new analysis run; an open case stays).

    ``analyzer`` (``{"provider": ..., "model": ...}``, checked by the caller) runs this
    analysis with another provider or model than the configured one.

    Raises:
        DocumentNotFound.
        InvalidTransition: the document has no normalized text yet.
    """
    options = {"analyzer": dict(analyzer)} if analyzer else {}
    return await _restart(pool, document_id, "reanalyze", context, max_attempts, options)


async def _restart(
    pool: Pool,
    document_id: int,
    action: str,
    context: AuditContext,
    max_attempts: int,
    options: Mapping[str, Any] | None = None,
) -> Document:
    async with pool.transaction() as conn:
        row = await (await conn.execute(SQL["lock_document"], {"id": document_id})).fetchone()
        if row is None:
            raise DocumentNotFound(f"no document with id {document_id}")
        state, failed_step = DocumentState(row[0]), row[1]
        step: Step = (
            retry_target(state, failed_step)
            if action == "retry"
            else reanalyze_target(state, failed_step)
        )
        await conn.execute(
            SQL["restart"],
            {"id": document_id, "from_state": state.value, "to_state": step.from_state.value},
        )
        await record_event(
            conn, document_id, state, step.from_state, None, {"action": action, "step": step.name}
        )
        await enqueue(
            conn,
            step.queue,
            {"document_id": document_id, **(options or {})},
            max_attempts=max_attempts,
        )
        await record(
            conn,
            context,
            f"document.{action}",
            target_type="document",
            target_id=document_id,
            details={"from_state": state.value, "step": step.name, **(options or {})},
        )
        return await get_document(conn, document_id)


async def delete_document(pool: Pool, document_id: int, *, context: AuditContext) -> None:
    """Delete a document with its content, texts, analyses, history and case; audited.
    Its pending jobs find nothing and do nothing. Raises DocumentNotFound, and
    UnderLegalHold while a legal hold keeps it (or its case)."""
    async with pool.transaction() as conn:
        try:
            cursor = await conn.execute(SQL["delete_document"], {"id": document_id})
        except psycopg.Error as exc:
            if exc.sqlstate == LEGAL_HOLD_SQLSTATE:  # a trigger of migration 0013
                raise UnderLegalHold(f"document {document_id} is under legal hold") from None
            raise
        row = await cursor.fetchone()
        if row is None:
            raise DocumentNotFound(f"no document with id {document_id}")
        await record(
            conn,
            context,
            "document.deleted",
            target_type="document",
            target_id=document_id,
            details={"title": row[1][:200], "state": row[2]},
        )


async def document_counts(conn: TrioConnection) -> dict[str, int]:
    """How many documents are in each state (every state present, zeros included)."""
    rows = await (await conn.execute(SQL["document_counts"])).fetchall()
    counts = {state.value: 0 for state in DocumentState}
    counts.update({str(state): int(count) for state, count in rows})
    return counts


STRANDED_AFTER_SECONDS = 900.0


async def requeue_stranded(
    pool: Pool, *, max_attempts: int, older_than: float = STRANDED_AFTER_SECONDS
) -> int:
    """Give a job back to documents that sit in a working state with none (an operator
    cancelled it with ``triaged jobs cancel``, or the dead-letter handling itself gave
    up): the step of their state is enqueued again, and the history says so.

    Idempotent, and safe beside running steps: the document row is locked and its state
    checked again before the job is added. Returns how many documents got a job.
    """
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        rows = await (
            await conn.execute(SQL["stranded_documents"], {"older_than": older_than, "limit": 1000})
        ).fetchall()
    requeued = 0
    for document_id, state_text in rows:
        state = DocumentState(state_text)
        step = step_from(state)
        if step is None:
            continue
        async with pool.transaction() as conn:
            row = await (await conn.execute(SQL["lock_document"], {"id": document_id})).fetchone()
            if row is None or row[0] != state.value:
                continue  # moved on meanwhile
            await enqueue(conn, step.queue, {"document_id": document_id}, max_attempts=max_attempts)
            await record_event(
                conn, document_id, state, state, None, {"action": "requeued", "step": step.name}
            )
        requeued += 1
    if requeued:
        log.warning(
            "gave %d stranded document(s) a job again",
            requeued,
            extra={"action": "document.requeued", "count": requeued},
        )
    return requeued
