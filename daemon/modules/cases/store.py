"""Cases in the database: opened by the pipeline's routing step, listed and shown, and
their history.

:func:`open_cases` runs in the caller's transaction (the routing step's, so a case exists
exactly when the document was routed to one). :func:`record_case_event` is the one write
path of a case's append-only history (``case_events``): whoever changes a case records
its event in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
from psycopg import sql
from psycopg.types.json import Jsonb

from daemon.modules.cases.errors import CaseNotFound
from daemon.modules.cases.filters import CASE_FILTER_SQL, CaseFilter, case_filter_params
from daemon.shared.db.queries import load_queries
from daemon.shared.pagination import Page, decode_cursor, fetch_limit, page_of

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

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
    version: int = 1
    assignee_user_id: int | None = None
    resolution: str | None = None
    resolution_note: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    category: str | None = None
    escalation_level: int = 0
    escalation_due_at: datetime | None = None

    @property
    def overdue(self) -> bool:
        """Open (not acknowledged) past its SLA deadline."""
        return (
            self.status == "open"
            and self.sla_due_at is not None
            and self.sla_due_at < datetime.now(UTC)
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Case:
        """From the columns the module's case queries select, in their order."""
        (id_, document_id, analysis_id, status, severity, due, assignee, tags, reason,
         created, updated, title, version, assignee_user_id, resolution, resolution_note,
         acknowledged_at, resolved_at, category, level, escalation_due) = row  # fmt: skip
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
            version=version,
            assignee_user_id=assignee_user_id,
            resolution=resolution,
            resolution_note=resolution_note,
            acknowledged_at=acknowledged_at,
            resolved_at=resolved_at,
            category=category,
            escalation_level=level,
            escalation_due_at=escalation_due,
        )


def _decision_rows(cases: Sequence[tuple[int, int, RoutingDecision]]) -> list[dict[str, Any]]:
    return [
        {
            "document_id": document_id,
            "analysis_id": analysis_id,
            "severity": decision.severity.value,
            "sla_due_at": None if decision.sla_due_at is None else decision.sla_due_at.isoformat(),
            "assignee": decision.assignee,
            "tags": list(decision.tags),
            "reason": decision.reason,
            "category": decision.category,
        }
        for document_id, analysis_id, decision in cases
    ]


async def open_cases(
    conn: TrioConnection, cases: Sequence[tuple[int, int, RoutingDecision]]
) -> dict[int, int]:
    """Open the documents' cases (document id, analysis id, decision) in the caller's
    transaction, in one statement; document id -> the new case's id, for those that had
    none (idempotent: a reanalysis that routes again keeps the case it has, see
    :func:`raise_case_severity`). Each new case records its ``opened`` event and its
    escalation ladder starts at its SLA deadline (``escalation_due_at``)."""
    if not cases:
        return {}
    cursor = await conn.execute(SQL["open_cases"], {"cases": Jsonb(_decision_rows(cases))})
    return {int(row[0]): int(row[1]) for row in await cursor.fetchall()}


async def raise_case_severity(
    conn: TrioConnection, cases: Sequence[tuple[int, int, RoutingDecision]]
) -> list[int]:
    """Raise the severity of the documents' unresolved cases whose new decision is more
    severe (document id, analysis id, decision), with their deadline brought to the
    earlier of the one they have and the new severity's; records ``severity_raised``.
    A lower or equal severity changes nothing. In the caller's transaction; idempotent
    (a second run with the same decisions finds nothing higher). The ids of the raised
    cases."""
    if not cases:
        return []
    cursor = await conn.execute(SQL["raise_case_severity"], {"cases": Jsonb(_decision_rows(cases))})
    return [int(row[0]) for row in await cursor.fetchall()]


async def record_case_event(
    conn: TrioConnection,
    case_id: int,
    kind: str,
    actor: str,
    detail: Mapping[str, Any] | None = None,
) -> tuple[int, datetime]:
    """Append one event to the case's history in the caller's transaction (the one write
    path of ``case_events``; not idempotent: call it in the transaction that makes the
    change it records). ``kind`` is lowercase letters and ``_`` (``opened``,
    ``acknowledged``, ``escalated``, ``notified``...), ``actor`` who did it (``user:3``,
    ``system``). The new event's id and time."""
    row = await (
        await conn.execute(
            SQL["record_case_event"],
            {"case_id": case_id, "kind": kind, "actor": actor, "detail": Jsonb(dict(detail or {}))},
        )
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


async def get_case(conn: TrioConnection, case_id: int) -> Case:
    """Raises CaseNotFound."""
    row = await (await conn.execute(SQL["get_case"], {"id": case_id})).fetchone()
    if row is None:
        raise CaseNotFound(f"no case with id {case_id}")
    return Case.from_row(row)


async def case_of_document(conn: TrioConnection, document_id: int) -> Case | None:
    row = await (await conn.execute(*case_of_document_query(document_id))).fetchone()
    return None if row is None else Case.from_row(row)


def case_of_document_query(document_id: int) -> tuple[str, dict[str, Any]]:
    """The statement of :func:`case_of_document` and its parameters, for a caller that
    sends it in one pipeline with others; its row (if any) is read with
    :meth:`Case.from_row`."""
    return SQL["case_of_document"], {"document_id": document_id}


# The columns :meth:`Case.from_row` reads, from ``cases c`` joined with ``documents d``.
CASE_SELECT = """SELECT c.id, c.document_id, c.analysis_id, c.status::text, c.severity,
       c.sla_due_at, c.assignee, c.tags, c.reason, c.created_at, c.updated_at, d.title,
       c.version, c.assignee_user_id, c.resolution, c.resolution_note, c.acknowledged_at,
       c.resolved_at, c.category, c.escalation_level, c.escalation_due_at
FROM cases c JOIN documents d ON d.id = c.document_id"""

LIST_CASES_SQL = (
    CASE_SELECT
    + "\nWHERE "
    + CASE_FILTER_SQL
    + "\n  AND (%(before_id)s::bigint IS NULL OR c.id < %(before_id)s)"
    + "\nORDER BY c.id DESC\nLIMIT %(limit)s"
)


# "filter" is CASE_FILTER_SQL, or TRUE; "after" is empty on the first page; "limit" a
# literal (a prepared statement with a parameter there ran twice as slow: generic plan).
LIST_CASE_VIEWS_SQL = """SELECT c.id, ({view})::text
FROM cases c JOIN documents d ON d.id = c.document_id
WHERE {filter} {after}
ORDER BY c.id DESC
LIMIT {limit}"""


async def list_case_views(
    conn: TrioConnection,
    view: sql.Composable,
    case_filter: CaseFilter | None = None,
    *,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[str]:
    """:func:`list_cases`, each item the JSON text of ``view`` (an SQL expression over
    ``cases c JOIN documents d``), built by the server: no row is loaded into Python
    objects. Read-only; runs in the caller's transaction.

    Raises:
        ValidationFailed: a malformed cursor.
    """
    case_filter = case_filter or CaseFilter()
    before_id = decode_cursor(cursor)
    if case_filter == CaseFilter():
        # No filter: a plain scan of the primary key, whose generic plan is the custom
        # one; prepared (after psycopg's threshold), it is planned once per connection.
        predicate, params, prepare = sql.SQL("TRUE"), {}, None
    else:
        predicate, params = sql.SQL(CASE_FILTER_SQL), case_filter_params(case_filter)
        prepare = False  # a generic plan cannot use the filters' indexes
    params |= {"before_id": before_id}
    after = sql.SQL("" if before_id is None else "AND c.id < %(before_id)s")
    query = sql.SQL(LIST_CASE_VIEWS_SQL).format(
        view=view, filter=predicate, after=after, limit=sql.Literal(fetch_limit(limit))
    )
    rows = await (await conn.execute(query, params, prepare=prepare)).fetchall()
    page = page_of(rows, limit, key=lambda row: int(row[0]))
    return Page(items=[row[1] for row in page.items], next_cursor=page.next_cursor)


async def list_cases(
    conn: TrioConnection,
    case_filter: CaseFilter | None = None,
    *,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Case]:
    """A page of the cases ``case_filter`` matches, newest first; ``cursor`` is the
    previous page's ``next_cursor``. Read-only; runs in the caller's transaction.

    Raises:
        ValidationFailed: a malformed cursor.
    """
    params = case_filter_params(case_filter or CaseFilter())
    params |= {"before_id": decode_cursor(cursor), "limit": fetch_limit(limit)}
    rows = await (await conn.execute(LIST_CASES_SQL, params, prepare=False)).fetchall()
    return page_of([Case.from_row(row) for row in rows], limit, key=lambda c: c.id)
