"""``/api/v1/audit``: the audit log, newest first (admins only)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from quart import Blueprint, Response

from daemon.api.access import requires
from daemon.api.context import current_context
from daemon.api.field_types import DateTime  # noqa: TC001 (pydantic reads it at run time)
from daemon.api.query import Cursor, QueryModel, query_params
from daemon.api.responses import json_response, page
from daemon.api.schemas.audit import AuditEventView
from daemon.api.schemas.base import page_of
from daemon.modules.audit import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    ActorType,
    AuditEvent,
    AuditFilter,
    list_events,
)
from daemon.modules.auth import Role

blueprint = Blueprint("audit", __name__, url_prefix="/api/v1/audit")


def event_view(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at,
        "actor": {"type": event.actor.type.value, "id": event.actor.id},
        "action": event.action,
        "target": {"type": event.target_type, "id": event.target_id},
        "client_addr": event.client_addr,
        "request_id": event.request_id,
        "details": event.details,
    }


class AuditFilterQuery(QueryModel):
    """The filters of the audit list, shared with the CSV export."""

    action: str | None = Field(default=None, max_length=200, description="exact action")
    action_prefix: str | None = Field(default=None, max_length=200, description="e.g. user.")
    actor_type: ActorType | None = None
    actor_id: int | None = Field(default=None, ge=0, le=2**63 - 1)
    target_type: str | None = Field(default=None, max_length=200)
    target_id: str | None = Field(default=None, max_length=200)
    since: DateTime | None = Field(default=None, description="at >= since")
    until: DateTime | None = Field(default=None, description="at < until")


class AuditQuery(AuditFilterQuery):
    cursor: Cursor | None = None
    limit: int = Field(default=DEFAULT_LIST_LIMIT, ge=1, le=MAX_LIST_LIMIT)


def audit_filter(query: AuditFilterQuery) -> AuditFilter:
    """The module's filter of the query's filter parameters (list and export)."""
    return AuditFilter(
        action=query.action,
        action_prefix=query.action_prefix,
        actor_type=query.actor_type,
        actor_id=query.actor_id,
        target_type=query.target_type,
        target_id=query.target_id,
        since=query.since,
        until=query.until,
    )


@blueprint.get("")
@requires(Role.ADMIN, query=AuditQuery, replies={200: page_of(AuditEventView)})
async def list_() -> Response:
    """Events matching the filters, newest first; pass ``next_cursor`` as ``cursor``."""
    query = query_params(AuditQuery)
    filters = audit_filter(query)
    async with current_context().db.connection() as conn:
        result = await list_events(conn, filters=filters, cursor=query.cursor, limit=query.limit)
    return json_response(page([event_view(e) for e in result.items], result.next_cursor))
