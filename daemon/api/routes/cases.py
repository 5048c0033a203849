"""``/api/v1/cases``: cases opened by the pipeline's routing step, and case work:
acknowledge, assign, resolve, reopen (If-Match required), comments and history.
Viewers read; analysts and admins act."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, request

from daemon.api.access import Reply, requires
from daemon.api.authn import audit_context, current_principal
from daemon.api.body import json_body
from daemon.api.context import current_context
from daemon.api.field_types import DateTime, JsonInt, QueryBool  # noqa: TC001 (pydantic reads it at run time)
from daemon.api.if_match import etag, required_version
from daemon.api.query import Cursor, QueryModel, query_params
from daemon.api.responses import json_response, page, page_response
from daemon.api.schemas.base import page_of
from daemon.api.schemas.cases import CaseEventView, CaseView, CommentView
from daemon.modules.auth import Role
from daemon.modules.cases import (
    Case,
    CaseAction,
    CaseEvent,
    CaseFilter,
    Comment,
    Request,
    act_on_case,
    add_comment,
    get_case,
    list_case_events,
    list_case_views,
    list_comments,
)
from daemon.shared.errors import ValidationFailed

blueprint = Blueprint("cases", __name__, url_prefix="/api/v1/cases")

_CHANGED = Reply(model=CaseView, headers=("ETag",))
_CHANGE_ERRORS = (409, 412, 428)
_IF_MATCH = {
    "If-Match": 'The case\'s ETag as last read, e.g. "7" (428 without, 412 if stale); '
    "* for any version."
}


class CaseFilterQuery(QueryModel):
    """The filters of the case list (also of the cases CSV export)."""

    status: str | None = Field(default=None, pattern="^(open|acknowledged|resolved|closed)$")
    severity: str | None = Field(default=None, pattern="^(low|medium|high|critical)$")
    assignee: str | None = Field(
        default=None,
        pattern="^(me|none|[0-9]{1,18})$",
        description="A user id, me (the caller's cases) or none (unassigned).",
    )
    overdue: QueryBool | None = Field(
        default=None, description="true: open (not acknowledged) past the SLA deadline."
    )
    escalation_level: int | None = Field(default=None, ge=0, le=1000)
    min_escalation_level: int | None = Field(default=None, ge=0, le=1000)
    category: str | None = Field(default=None, min_length=1, max_length=100)
    created_after: DateTime | None = Field(default=None, description="created_at >= this")
    created_before: DateTime | None = Field(default=None, description="created_at < this")
    due_after: DateTime | None = Field(default=None, description="sla_due_at >= this")
    due_before: DateTime | None = Field(default=None, description="sla_due_at < this")
    q: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Text in the document's title, the case's reason or resolution note.",
    )


class CaseListQuery(CaseFilterQuery):
    cursor: Cursor | None = None
    limit: int = Field(default=50, ge=1, le=500)


class PageQuery(QueryModel):
    cursor: Cursor | None = None
    limit: int = Field(default=100, ge=1, le=500)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcknowledgeBody(_Body):
    """Nothing to give (the body may be left out)."""


class AssignBody(_Body):
    user_id: JsonInt | None = Field(
        ge=1, le=2**63 - 1, description="An active analyst or admin; null: nobody."
    )


class ResolveBody(_Body):
    resolution: str = Field(max_length=40, description="One of TRIAGED_CASE_RESOLUTIONS.")
    note: str | None = Field(default=None, max_length=10_000)


class ReopenBody(_Body):
    note: str | None = Field(default=None, max_length=10_000)


class CommentBody(_Body):
    body: str = Field(min_length=1, max_length=10_000)


def case_view(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "document_id": case.document_id,
        "document_title": case.document_title,
        "analysis_id": case.analysis_id,
        "status": case.status,
        "severity": case.severity,
        "category": case.category,
        "sla_due_at": case.sla_due_at,
        "overdue": case.overdue,
        "assignee": case.assignee,
        "assignee_user_id": case.assignee_user_id,
        "tags": list(case.tags),
        "reason": case.reason,
        "resolution": case.resolution,
        "resolution_note": case.resolution_note,
        "acknowledged_at": case.acknowledged_at,
        "resolved_at": case.resolved_at,
        "escalation_level": case.escalation_level,
        "escalation_due_at": case.escalation_due_at,
        "version": case.version,
        "created_at": case.created_at,
        "updated_at": case.updated_at,
    }


# case_view as the server builds it for the list, over ``cases c JOIN documents d``
# (tests/integration/test_api_read_views.py holds the two to the same JSON).
CASE_VIEW_SQL = sql.SQL(
    """json_build_object(
    'id', c.id, 'document_id', c.document_id, 'document_title', d.title,
    'analysis_id', c.analysis_id, 'status', c.status, 'severity', c.severity,
    'category', c.category, 'sla_due_at', api_time(c.sla_due_at),
    'overdue', (c.status = 'open' AND c.sla_due_at IS NOT NULL AND c.sla_due_at < now()),
    'assignee', c.assignee, 'assignee_user_id', c.assignee_user_id,
    'tags', coalesce(c.tags, '{}'::text[]), 'reason', c.reason,
    'resolution', c.resolution, 'resolution_note', c.resolution_note,
    'acknowledged_at', api_time(c.acknowledged_at), 'resolved_at', api_time(c.resolved_at),
    'escalation_level', c.escalation_level,
    'escalation_due_at', api_time(c.escalation_due_at), 'version', c.version,
    'created_at', api_time(c.created_at), 'updated_at', api_time(c.updated_at))"""
)


def comment_view(comment: Comment) -> dict[str, Any]:
    return {
        "id": comment.id,
        "case_id": comment.case_id,
        "author": comment.author,
        "author_user_id": comment.author_user_id,
        "body": comment.body,
        "created_at": comment.created_at,
    }


def event_view(event: CaseEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "case_id": event.case_id,
        "kind": event.kind,
        "actor": event.actor,
        "at": event.at,
        "detail": event.detail,
    }


def _case_response(case: Case) -> Response:
    return json_response(case_view(case), headers={"ETag": etag(case.version)})


def _assignee_filter(assignee: str | None) -> dict[str, Any]:
    if assignee is None:
        return {}
    if assignee == "none":
        return {"unassigned": True}
    if assignee == "me":
        user_id = current_principal().user_id
        if user_id is None:
            raise ValidationFailed(
                [{"field": "assignee", "message": "me needs a user's session, not an API key"}]
            )
        return {"assignee_user_id": user_id}
    return {"assignee_user_id": int(assignee)}


def case_filter_of(query: CaseFilterQuery) -> CaseFilter:
    """The module's filter for the list's query (also for other lists of cases, such as
    the CSV export, whose query model extends :class:`CaseFilterQuery`).

    Raises:
        ValidationFailed: ``assignee=me`` from an API key (it has no user).
    """
    return CaseFilter(
        status=query.status,
        severity=query.severity,
        overdue=query.overdue,
        escalation_level=query.escalation_level,
        min_escalation_level=query.min_escalation_level,
        category=query.category,
        created_after=query.created_after,
        created_before=query.created_before,
        due_after=query.due_after,
        due_before=query.due_before,
        text=query.q,
        **_assignee_filter(query.assignee),
    )


@blueprint.get("")
@requires(Role.VIEWER, query=CaseListQuery, replies={200: page_of(CaseView)})
async def list_() -> Response:
    """Cases newest first, filtered by status, severity, assignee (a user id, ``me``,
    ``none``), overdue, escalation level, category, created and due ranges and text."""
    query = query_params(CaseListQuery)
    case_filter = case_filter_of(query)
    async with current_context().db.connection() as conn:
        await conn.set_autocommit(True)  # one statement: no BEGIN and ROLLBACK round trips
        cases = await list_case_views(
            conn, CASE_VIEW_SQL, case_filter, cursor=query.cursor, limit=query.limit
        )
    return page_response(cases.items, cases.next_cursor)


@blueprint.get("/<int:case_id>")
@requires(Role.VIEWER, replies={200: Reply(model=CaseView, headers=("ETag",))})
async def show(case_id: int) -> Response:
    """One case; its ETag is its version, for If-Match on changes."""
    async with current_context().db.connection() as conn:
        await conn.set_autocommit(True)  # one statement: no BEGIN and ROLLBACK round trips
        case = await get_case(conn, case_id)
    return _case_response(case)


async def _act(case_id: int, action_request: Request) -> Response:
    expected = required_version()
    context = current_context()
    async with context.db.transaction() as conn:
        case = await act_on_case(
            conn,
            case_id,
            action_request,
            config=context.parts.cases,
            context=audit_context(),
            expected_version=expected,
        )
    return _case_response(case)


@blueprint.post("/<int:case_id>/acknowledge")
@requires(
    Role.ANALYST,
    body=AcknowledgeBody,
    body_required=False,
    replies={200: _CHANGED},
    errors=_CHANGE_ERRORS,
    headers=_IF_MATCH,
)
async def acknowledge(case_id: int) -> Response:
    """Take an open case: stops its escalation ladder. If-Match required (428 without,
    412 stale); 409 with ``case_status`` unless the case is open."""
    if await request.get_data():
        await json_body(AcknowledgeBody)
    return await _act(case_id, Request(action=CaseAction.ACKNOWLEDGE))


@blueprint.post("/<int:case_id>/assign")
@requires(
    Role.ANALYST, body=AssignBody, replies={200: _CHANGED}, errors=_CHANGE_ERRORS, headers=_IF_MATCH
)
async def assign(case_id: int) -> Response:
    """Assign a case not resolved to an active analyst or admin, or to nobody (null).
    If-Match required."""
    body = await json_body(AssignBody)
    return await _act(case_id, Request(action=CaseAction.ASSIGN, user_id=body.user_id))


@blueprint.post("/<int:case_id>/resolve")
@requires(
    Role.ANALYST,
    body=ResolveBody,
    replies={200: _CHANGED},
    errors=_CHANGE_ERRORS,
    headers=_IF_MATCH,
)
async def resolve(case_id: int) -> Response:
    """Resolve a case with a resolution and a note: stops its ladder. If-Match required."""
    body = await json_body(ResolveBody)
    return await _act(
        case_id, Request(action=CaseAction.RESOLVE, resolution=body.resolution, note=body.note)
    )


@blueprint.post("/<int:case_id>/reopen")
@requires(
    Role.ANALYST,
    body=ReopenBody,
    body_required=False,
    replies={200: _CHANGED},
    errors=_CHANGE_ERRORS,
    headers=_IF_MATCH,
)
async def reopen(case_id: int) -> Response:
    """Reopen an acknowledged or resolved case: its escalation ladder starts again from
    level 0, due after its severity's SLA. If-Match required."""
    note = None
    if await request.get_data():
        note = (await json_body(ReopenBody)).note
    return await _act(case_id, Request(action=CaseAction.REOPEN, note=note))


@blueprint.get("/<int:case_id>/comments")
@requires(Role.VIEWER, query=PageQuery, replies={200: page_of(CommentView)})
async def comments(case_id: int) -> Response:
    """A case's comments, oldest first."""
    query = query_params(PageQuery)
    async with current_context().db.connection() as conn:
        found = await list_comments(conn, case_id, cursor=query.cursor, limit=query.limit)
    return json_response(page([comment_view(c) for c in found.items], found.next_cursor))


@blueprint.post("/<int:case_id>/comments")
@requires(
    Role.ANALYST,
    body=CommentBody,
    replies={201: Reply(model=CommentView, description="Created")},
)
async def comment(case_id: int) -> Response:
    """Comment on a case, in any state (no If-Match: comments only add)."""
    body = await json_body(CommentBody)
    async with current_context().db.transaction() as conn:
        created = await add_comment(conn, case_id, body.body, context=audit_context())
    return json_response(comment_view(created), 201)


@blueprint.get("/<int:case_id>/events")
@requires(Role.VIEWER, query=PageQuery, replies={200: page_of(CaseEventView)})
async def events(case_id: int) -> Response:
    """A case's history, oldest first: every event with its actor and time."""
    query = query_params(PageQuery)
    async with current_context().db.connection() as conn:
        found = await list_case_events(conn, case_id, cursor=query.cursor, limit=query.limit)
    return json_response(page([event_view(e) for e in found.items], found.next_cursor))
