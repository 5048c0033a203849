"""``/api/v1/sources``: where documents come from (admins write; analysts poll now;
viewers read). Secrets in a source's configuration are write-only: the views name the
secrets that are set (``secrets_set``), never their values."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response

from daemon.api.access import Reply, requires
from daemon.api.authn import audit_context
from daemon.api.body import json_body
from daemon.api.context import current_context
from daemon.api.field_types import JsonBool, JsonInt, JsonNumber  # noqa: TC001 (pydantic reads it at run time)
from daemon.api.query import Cursor, QueryModel, query_params
from daemon.api.responses import json_response, no_content, page
from daemon.api.schemas.base import page_of
from daemon.api.schemas.sources import PollRequested, SourcePollView, SourceView
from daemon.composition import sources_config
from daemon.modules.auth import Role
from daemon.modules.sources import (
    KINDS,
    PollRecord,
    Source,
    SourcePolicy,
    check_directory_config,
    check_source_input,
    create_source,
    delete_source,
    get_source,
    list_polls,
    list_sources,
    request_poll,
    update_source,
)
from daemon.shared.pagination import decode_cursor

blueprint = Blueprint("sources", __name__, url_prefix="/api/v1/sources")

Kind = Literal["upload", "webhook", "http", "feed", "directory"]
assert set(Kind.__args__) == set(KINDS)  # type: ignore[attr-defined]


class ScheduleBody(BaseModel):
    """``{"interval_seconds": N}`` or ``{"cron": "...", "timezone": "Europe/Berlin"}``."""

    model_config = ConfigDict(extra="forbid")

    interval_seconds: JsonNumber | None = Field(default=None, ge=1, le=31_622_400)
    cron: str | None = Field(default=None, max_length=200)
    timezone: str = Field(default="UTC", max_length=100)


class LimitsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items_per_poll: JsonInt | None = Field(default=None, ge=1, le=10_000)
    bytes_per_item: JsonInt | None = Field(default=None, ge=1, le=1 << 30)
    timeout_seconds: JsonNumber | None = Field(default=None, ge=1, le=3600)


_CONFIG_DOC = (
    "The kind's settings: http/feed {url, auth_header_name, auth_header (secret), "
    "max_redirects, fetch_linked_page (feed)}; directory {path, include, exclude, "
    "settle_seconds, after}; webhook {secret, previous_secret, previous_secret_expires_at, "
    "tolerance_seconds}. Secrets are write-only; left out on a PATCH, they are kept."
)


class SourceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: Kind
    config: dict[str, Any] = Field(default_factory=dict, description=_CONFIG_DOC)
    schedule: ScheduleBody | None = Field(default=None, description="pull kinds only")
    enabled: JsonBool = True
    metadata: dict[str, Any] = Field(default_factory=dict)
    title_template: str = Field(default="{title}", max_length=500)
    limits: LimitsBody | None = None


class SourcePatchBody(BaseModel):
    """Fields left out stay as they are (``config`` given is the whole configuration,
    but its secrets left out are kept)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    config: dict[str, Any] | None = Field(default=None, description=_CONFIG_DOC)
    schedule: ScheduleBody | None = None
    enabled: JsonBool | None = None
    metadata: dict[str, Any] | None = None
    title_template: str | None = Field(default=None, max_length=500)
    limits: LimitsBody | None = None


class SourceListQuery(QueryModel):
    kind: Kind | None = None
    cursor: Cursor | None = None
    limit: int = Field(default=100, ge=1, le=500)


class PollListQuery(QueryModel):
    cursor: Cursor | None = None
    limit: int = Field(default=50, ge=1, le=500)


def source_view(source: Source) -> dict[str, Any]:
    return {
        "id": source.id,
        "name": source.name,
        "kind": source.kind,
        "config": source.config,
        "secrets_set": sorted(source.secrets),
        "schedule": None if source.schedule is None else source.schedule.as_json(),
        "enabled": source.enabled,
        "metadata": source.metadata,
        "title_template": source.title_template,
        "limits": {
            "items_per_poll": source.limits.items_per_poll,
            "bytes_per_item": source.limits.bytes_per_item,
            "timeout_seconds": source.limits.timeout_seconds,
        },
        "builtin": source.builtin,
        "last_poll_at": source.last_poll_at,
        "last_success_at": source.last_success_at,
        "last_error": source.last_error,
        "consecutive_failures": source.consecutive_failures,
        "next_poll_at": source.next_poll_at,
        "disabled_reason": source.disabled_reason,
        "created_at": source.created_at,
        "updated_at": source.updated_at,
    }


def poll_view(poll: PollRecord) -> dict[str, Any]:
    return {
        "id": poll.id,
        "job_id": poll.job_id,
        "trigger": poll.trigger,
        "started_at": poll.started_at,
        "finished_at": poll.finished_at,
        "items_seen": poll.items_seen,
        "documents_created": poll.documents_created,
        "error": poll.error,
        "duration_ms": poll.duration_ms,
    }


def _policy() -> SourcePolicy:
    return sources_config(current_context().parts).policy


@blueprint.post("")
@requires(
    Role.ADMIN,
    body=SourceBody,
    replies={201: Reply(model=SourceView, description="Created", headers=("Location",))},
    errors=(409,),
)
async def create() -> Response:
    """Create a source; 409 if the name is taken; 422 naming the field for a
    configuration the kind refuses (a URL to a loopback, private or link-local address
    unless allowed by the fetch settings, a schedule on a push kind, ...)."""
    body = await json_body(SourceBody)
    checked = check_source_input(body.model_dump(exclude_unset=True), _policy())
    await check_directory_config(checked.kind, checked.config, _policy())
    source = await create_source(current_context().db, checked, context=audit_context())
    return json_response(
        source_view(source), 201, headers={"Location": f"/api/v1/sources/{source.id}"}
    )


@blueprint.get("")
@requires(Role.VIEWER, query=SourceListQuery, replies={200: page_of(SourceView)})
async def list_() -> Response:
    """Sources by id (deleted ones hidden), optionally of one kind; cursor pagination."""
    query = query_params(SourceListQuery)
    result = await list_sources(
        current_context().db, after=decode_cursor(query.cursor), limit=query.limit,
        kind=query.kind,
    )  # fmt: skip
    return json_response(page([source_view(s) for s in result.items], result.next_cursor))


@blueprint.get("/<int:source_id>")
@requires(Role.VIEWER, replies={200: SourceView})
async def show(source_id: int) -> Response:
    """One source with its health."""
    return json_response(source_view(await get_source(current_context().db, source_id)))


@blueprint.patch("/<int:source_id>")
@requires(Role.ADMIN, body=SourcePatchBody, replies={200: SourceView}, errors=(409,))
async def update(source_id: int) -> Response:
    """Change a source, all or nothing; ``enabled: true`` re-enables a source disabled
    after failures (its failure count and backoff reset)."""
    body = await json_body(SourcePatchBody)
    if body.config is not None:
        current = await get_source(current_context().db, source_id)
        await check_directory_config(current.kind, body.config, _policy())
    source = await update_source(
        current_context().db, source_id, body.model_dump(exclude_unset=True), _policy(),
        context=audit_context(),
    )  # fmt: skip
    return json_response(source_view(source))


@blueprint.delete("/<int:source_id>")
@requires(Role.ADMIN, replies={204: None})
async def delete(source_id: int) -> Response:
    """Delete a source: it is disabled and hidden, its schedule removed; its documents
    are kept (and keep its id). The built-in upload source cannot be deleted (404)."""
    await delete_source(current_context().db, source_id, context=audit_context())
    return no_content()


@blueprint.post("/<int:source_id>/poll")
@requires(
    Role.ANALYST,
    replies={202: Reply(model=PollRequested, description="Poll enqueued")},
    errors=(409,),
)
async def poll_now(source_id: int) -> Response:
    """Poll the source now (the same job its schedule fires); 409 for a push kind or a
    disabled source."""
    job_id = await request_poll(current_context().db, source_id, context=audit_context())
    return json_response({"job_id": job_id, "source_id": source_id}, 202)


@blueprint.get("/<int:source_id>/polls")
@requires(Role.VIEWER, query=PollListQuery, replies={200: page_of(SourcePollView)})
async def polls(source_id: int) -> Response:
    """The source's polls, newest first: when, items seen, documents created, error."""
    query = query_params(PollListQuery)
    result = await list_polls(
        current_context().db, source_id, before=decode_cursor(query.cursor), limit=query.limit
    )
    return json_response(page([poll_view(p) for p in result.items], result.next_cursor))
