"""Cases in the database: opened by the pipeline's routing step, listed and shown.

:func:`open_cases` runs in the caller's transaction (the routing step's, so a case exists
exactly when the document was routed to one). Case work (acknowledge, assign, resolve,
escalate) comes with the cases API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from psycopg import sql
from psycopg.types.json import Jsonb

from daemon.modules.cases.errors import CaseNotFound
from daemon.shared.db.queries import load_queries
from daemon.shared.pagination import Page, decode_cursor, fetch_limit, page_of

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from daemon.modules.cases.routing import RoutingDecision
    from daemon.shared.db.psycopg_trio import TrioConnection

SQL = load_queries("daemon.modules.cases", "queries.sql")


@attrs.frozen(kw_only=True)
class Case:
    id: int
    document_id: int
    analysis_id: int | None
    status: str
    severity: str
    sla_due_at: datetime | None
    assignee: str | None
    tags: tuple[str, ...]
    reason: str
    created_at: datetime
    updated_at: datetime
    document_title: str

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Case:
        (id_, document_id, analysis_id, status, severity, due, assignee, tags, reason,
         created, updated, title) = row  # fmt: skip
        return cls(
            id=id_,
            document_id=document_id,
            analysis_id=analysis_id,
            status=status,
            severity=severity,
            sla_due_at=due,
            assignee=assignee,
            tags=tuple(tags or ()),
            reason=reason,
            created_at=created,
            updated_at=updated,
            document_title=title,
        )


async def open_cases(
    conn: TrioConnection, cases: Sequence[tuple[int, int, RoutingDecision]]
) -> dict[int, int]:
    """Open the documents' cases (document id, analysis id, decision) in the caller's
    transaction, in one statement; document id -> the new case's id, for those that had
    none (idempotent: a reanalysis that routes again keeps the case it has)."""
    if not cases:
        return {}
    rows = [
        {
            "document_id": document_id,
            "analysis_id": analysis_id,
            "severity": decision.severity.value,
            "sla_due_at": None if decision.sla_due_at is None else decision.sla_due_at.isoformat(),
            "assignee": decision.assignee,
            "tags": list(decision.tags),
            "reason": decision.reason,
        }
        for document_id, analysis_id, decision in cases
    ]
    cursor = await conn.execute(SQL["open_cases"], {"cases": Jsonb(rows)})
    return {int(row[0]): int(row[1]) for row in await cursor.fetchall()}


async def get_case(conn: TrioConnection, case_id: int) -> Case:
    """Raises CaseNotFound."""
    row = await (await conn.execute(SQL["get_case"], {"id": case_id})).fetchone()
    if row is None:
        raise CaseNotFound(f"no case with id {case_id}")
    return Case.from_row(row)


async def case_of_document(conn: TrioConnection, document_id: int) -> Case | None:
    row = await (
        await conn.execute(SQL["case_of_document"], {"document_id": document_id})
    ).fetchone()
    return None if row is None else Case.from_row(row)


@attrs.frozen(kw_only=True)
class CaseFilter:
    """Conditions of the case list and export; every field left None matches everything."""

    status: str | None = None
    severity: str | None = None
    assignee: str | None = None


def case_filter_sql(filters: CaseFilter) -> tuple[sql.SQL, dict[str, Any]]:
    """The SQL predicate of ``filters`` over ``cases c JOIN documents d`` and its
    parameters: the one translation of a :class:`CaseFilter`, used by the list and the
    CSV export alike (``before_id`` and ``limit`` are free parameter names)."""
    params = {"status": filters.status, "severity": filters.severity, "assignee": filters.assignee}
    return sql.SQL(SQL["case_filter"]), params


async def list_cases(
    conn: TrioConnection,
    *,
    status: str | None = None,
    severity: str | None = None,
    assignee: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Case]:
    """A page of cases, newest first; ``cursor`` is the previous page's ``next_cursor``.
    Read-only; runs in the caller's transaction.

    Raises:
        ValidationFailed: a malformed cursor.
    """
    predicate, params = case_filter_sql(
        CaseFilter(status=status, severity=severity, assignee=assignee)
    )
    rows = await (
        await conn.execute(
            sql.SQL(SQL["list_cases"]).format(filter=predicate),
            {**params, "before_id": decode_cursor(cursor), "limit": fetch_limit(limit)},
            prepare=False,
        )
    ).fetchall()
    return page_of([Case.from_row(row) for row in rows], limit, key=lambda c: c.id)
