"""The case list's filters as SQL: one condition text and its parameters, for every
reader of cases (the API's list, the CLI, the CSV export).

Use::

    from daemon.modules.cases import CASE_SELECT, CASE_FILTER_SQL, case_filter_params

    query = CASE_SELECT + " WHERE " + CASE_FILTER_SQL + " ORDER BY c.id"
    await conn.execute(query, case_filter_params(case_filter) | {...}, prepare=False)

The condition reads the aliases ``c`` (cases) and ``d`` (documents) and named parameters
prefixed ``f_``. Each filter left None matches everything; the statement must not be
prepared (``prepare=False``): PostgreSQL then plans it with the values bound, folds the
filters not given away and uses the index of those given (``cases_status``,
``cases_severity``, ``cases_assignee_user``, ``cases_unassigned``, ``cases_category``,
``cases_level``, ``cases_unresolved_due``).

Overdue means open (not acknowledged) past its SLA deadline (the acknowledgement
deadline), as the escalation ladder counts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from datetime import datetime

MAX_QUERY_CHARS = 200

CASE_FILTER_SQL = """(%(f_status)s::text IS NULL OR c.status = %(f_status)s::case_status)
  AND (%(f_severity)s::text IS NULL OR c.severity = %(f_severity)s)
  AND (%(f_assignee)s::bigint IS NULL OR c.assignee_user_id = %(f_assignee)s)
  AND (NOT %(f_unassigned)s OR c.assignee_user_id IS NULL)
  AND (%(f_overdue)s::boolean IS NULL
       OR %(f_overdue)s = (c.status = 'open' AND c.sla_due_at < now()))
  AND (%(f_level)s::integer IS NULL OR c.escalation_level = %(f_level)s)
  AND (%(f_min_level)s::integer IS NULL OR c.escalation_level >= %(f_min_level)s)
  AND (%(f_category)s::text IS NULL OR c.category = %(f_category)s)
  AND (%(f_created_after)s::timestamptz IS NULL OR c.created_at >= %(f_created_after)s)
  AND (%(f_created_before)s::timestamptz IS NULL OR c.created_at < %(f_created_before)s)
  AND (%(f_due_after)s::timestamptz IS NULL OR c.sla_due_at >= %(f_due_after)s)
  AND (%(f_due_before)s::timestamptz IS NULL OR c.sla_due_at < %(f_due_before)s)
  AND (%(f_text)s::text IS NULL
       OR d.title ILIKE %(f_text)s ESCAPE '\\' OR c.reason ILIKE %(f_text)s ESCAPE '\\'
       OR c.resolution_note ILIKE %(f_text)s ESCAPE '\\')"""


@attrs.frozen(kw_only=True)
class CaseFilter:
    """Which cases: every field None (or False) matches all.

    ``assignee_user_id`` a user's cases; ``unassigned`` those of nobody; ``overdue``
    True those open past their deadline, False the others; ``escalation_level`` exactly,
    ``min_escalation_level`` at least; ``created_*`` and ``due_*`` ranges, ``*_after``
    inclusive and ``*_before`` exclusive; ``text`` a substring of the document's title,
    the case's reason or resolution note, ignoring case.
    """

    status: str | None = None
    severity: str | None = None
    assignee_user_id: int | None = None
    unassigned: bool = False
    overdue: bool | None = None
    escalation_level: int | None = None
    min_escalation_level: int | None = None
    category: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    due_after: datetime | None = None
    due_before: datetime | None = None
    text: str | None = None


def case_filter_params(case_filter: CaseFilter) -> dict[str, Any]:
    """The parameters of :data:`CASE_FILTER_SQL` for ``case_filter``."""
    f = case_filter
    return {
        "f_status": f.status,
        "f_severity": f.severity,
        "f_assignee": f.assignee_user_id,
        "f_unassigned": f.unassigned,
        "f_overdue": f.overdue,
        "f_level": f.escalation_level,
        "f_min_level": f.min_escalation_level,
        "f_category": f.category,
        "f_created_after": f.created_after,
        "f_created_before": f.created_before,
        "f_due_after": f.due_after,
        "f_due_before": f.due_before,
        "f_text": None if not f.text else f"%{_escape_like(f.text)}%",
    }


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
