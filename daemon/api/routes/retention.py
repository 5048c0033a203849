"""``/api/v1/holds`` (legal holds) and ``/api/v1/retention/runs`` (purge reports), admins
only: a hold names litigation or an investigation, and both steer what is deleted."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, request

from daemon.api.access import Reply, requires
from daemon.api.authn import audit_context
from daemon.api.body import json_body
from daemon.api.context import current_context
from daemon.api.field_types import JsonInt, QueryBool  # noqa: TC001 (pydantic reads it at run time)
from daemon.api.query import Cursor, QueryModel, query_params
from daemon.api.responses import json_response, page
from daemon.api.schemas.base import page_of
from daemon.api.schemas.retention import HoldView, RetentionRunView
from daemon.modules.auth import Role
from daemon.modules.retention import (
    Hold,
    RunReport,
    get_hold,
    list_holds,
    list_runs,
    place_hold,
    release_hold,
)
from daemon.shared.errors import ValidationFailed
from daemon.shared.pagination import MAX_ID

blueprint = Blueprint("retention", __name__, url_prefix="/api/v1")


def hold_view(hold: Hold) -> dict[str, Any]:
    return {
        "id": hold.id,
        "target_type": hold.target_type,
        "target_id": hold.target_id,
        "reason": hold.reason,
        "created_by": hold.created_by,
        "created_at": hold.created_at,
        "released_at": hold.released_at,
        "released_by": hold.released_by,
        "release_reason": hold.release_reason,
    }


def run_view(run: RunReport) -> dict[str, Any]:
    return {
        "id": run.id,
        "job_id": run.job_id,
        "trigger": run.trigger,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "report": run.report,
    }


class HoldBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_type: Literal["document", "case"]
    target_id: JsonInt = Field(ge=1, le=MAX_ID)
    reason: str = Field(min_length=1, max_length=2000)


class ReleaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class ReleaseQuery(QueryModel):
    reason: str | None = Field(
        default=None, min_length=1, max_length=2000, description="or in a JSON body"
    )


class HoldListQuery(QueryModel):
    include_released: QueryBool = False
    target_type: Literal["document", "case"] | None = None
    target_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    cursor: Cursor | None = None
    limit: int = Field(default=50, ge=1, le=500)


class RunListQuery(QueryModel):
    cursor: Cursor | None = None
    limit: int = Field(default=50, ge=1, le=500)


@blueprint.post("/holds")
@requires(
    Role.ADMIN,
    body=HoldBody,
    replies={201: Reply(model=HoldView, description="Created", headers=("Location",))},
)
async def create_hold() -> Response:
    """Put a legal hold on a document or a case: neither it nor what it depends on is
    purged (or deleted) while the hold stands. 422 when the target does not exist."""
    body = await json_body(HoldBody)
    hold = await place_hold(
        current_context().db,
        target_type=body.target_type,
        target_id=body.target_id,
        reason=body.reason,
        context=audit_context(),
    )
    return json_response(hold_view(hold), 201, headers={"Location": f"/api/v1/holds/{hold.id}"})


@blueprint.get("/holds")
@requires(Role.ADMIN, query=HoldListQuery, replies={200: page_of(HoldView)})
async def list_holds_() -> Response:
    """Standing holds newest first (released ones too with ``include_released=true``)."""
    query = query_params(HoldListQuery)
    async with current_context().db.connection() as conn:
        holds = await list_holds(
            conn,
            include_released=query.include_released,
            target_type=query.target_type,
            target_id=query.target_id,
            cursor=query.cursor,
            limit=query.limit,
        )
    return json_response(page([hold_view(h) for h in holds.items], holds.next_cursor))


@blueprint.get("/holds/<int:hold_id>")
@requires(Role.ADMIN, replies={200: HoldView})
async def show_hold(hold_id: int) -> Response:
    """One hold."""
    async with current_context().db.connection() as conn:
        return json_response(hold_view(await get_hold(conn, hold_id)))


@blueprint.delete("/holds/<int:hold_id>")
@requires(
    Role.ADMIN,
    body=ReleaseBody,
    body_required=False,
    query=ReleaseQuery,
    replies={200: HoldView},
    errors=(409,),
)
async def release(hold_id: int) -> Response:
    """Release a hold, with a reason (``?reason=`` or a JSON body ``{reason}``); 409 if it
    is already released. What it kept goes at the next purge once past its period."""
    query = query_params(ReleaseQuery)
    reason = query.reason
    if await request.get_data():
        reason = (await json_body(ReleaseBody)).reason
    if reason is None:
        raise ValidationFailed([{"field": "reason", "message": "a release needs a reason"}])
    hold = await release_hold(current_context().db, hold_id, reason=reason, context=audit_context())
    return json_response(hold_view(hold))


@blueprint.get("/retention/runs")
@requires(Role.ADMIN, query=RunListQuery, replies={200: page_of(RetentionRunView)})
async def runs() -> Response:
    """Purge run reports newest first: per kind, rows deleted, kept by holds, seconds."""
    query = query_params(RunListQuery)
    async with current_context().db.connection() as conn:
        result = await list_runs(conn, cursor=query.cursor, limit=query.limit)
    return json_response(page([run_view(r) for r in result.items], result.next_cursor))
