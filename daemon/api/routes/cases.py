"""``/api/v1/cases``: cases opened by the pipeline's routing step (listing and details;
case work comes with the cases API)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from quart import Blueprint, Response

from daemon.api.access import requires
from daemon.api.context import current_context
from daemon.api.query import Cursor, QueryModel, query_params
from daemon.api.responses import json_response, page
from daemon.api.schemas.base import page_of
from daemon.api.schemas.cases import CaseView
from daemon.modules.auth import Role
from daemon.modules.cases import Case, CaseFilter, get_case, list_cases

blueprint = Blueprint("cases", __name__, url_prefix="/api/v1/cases")


class CaseFilterQuery(QueryModel):
    """The filters of the case list, shared with the CSV export."""

    status: str | None = Field(default=None, pattern="^(open|acknowledged|resolved|closed)$")
    severity: str | None = Field(default=None, pattern="^(low|medium|high|critical)$")
    assignee: str | None = Field(default=None, max_length=200)


class CaseListQuery(CaseFilterQuery):
    cursor: Cursor | None = None
    limit: int = Field(default=50, ge=1, le=500)


def case_filter(query: CaseFilterQuery) -> CaseFilter:
    """The module's filter of the query's filter parameters (list and export)."""
    return CaseFilter(status=query.status, severity=query.severity, assignee=query.assignee)


def case_view(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "document_id": case.document_id,
        "document_title": case.document_title,
        "analysis_id": case.analysis_id,
        "status": case.status,
        "severity": case.severity,
        "sla_due_at": case.sla_due_at,
        "assignee": case.assignee,
        "tags": list(case.tags),
        "reason": case.reason,
        "created_at": case.created_at,
        "updated_at": case.updated_at,
    }


@blueprint.get("")
@requires(Role.VIEWER, query=CaseListQuery, replies={200: page_of(CaseView)})
async def list_() -> Response:
    """Cases newest first, filtered by status, severity and assignee."""
    query = query_params(CaseListQuery)
    async with current_context().db.connection() as conn:
        cases = await list_cases(
            conn,
            status=query.status,
            severity=query.severity,
            assignee=query.assignee,
            cursor=query.cursor,
            limit=query.limit,
        )
    return json_response(page([case_view(c) for c in cases.items], cases.next_cursor))


@blueprint.get("/<int:case_id>")
@requires(Role.VIEWER, replies={200: CaseView})
async def show(case_id: int) -> Response:
    """One case."""
    async with current_context().db.connection() as conn:
        return json_response(case_view(await get_case(conn, case_id)))
