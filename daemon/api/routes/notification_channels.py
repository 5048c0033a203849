"""``/api/v1/notification-channels``: where case notifications go (admins only).

Secrets are write-only: given in ``config`` (``secret`` of a webhook, ``password`` of an
email channel), stored, never answered. A webhook URL and an SMTP host must pass the SSRF
guard's address policy and egress allowlist (``TRIAGED_FETCH_*``), else 422 on
``config.url`` / ``config.host``. Every write is audited, never with the secret."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response

from daemon.api.access import Reply, requires
from daemon.api.authn import audit_context
from daemon.api.body import json_body
from daemon.api.context import current_context
from daemon.api.query import Cursor, QueryModel, query_params
from daemon.api.responses import json_response, no_content, page
from daemon.api.schemas.base import page_of
from daemon.api.schemas.notifications import ChannelTestResult, NotificationChannelView
from daemon.modules.audit import record
from daemon.modules.auth import Role
from daemon.modules.notifications import (
    Channel,
    create_channel,
    delete_channel,
    get_channel,
    list_channels,
    send_test_message,
    update_channel,
)

blueprint = Blueprint("notification_channels", __name__, url_prefix="/api/v1/notification-channels")
Event = Literal["opened", "escalated", "resolved"]
Severity = Literal["low", "medium", "high", "critical"]


class ChannelCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64)
    kind: Literal["webhook", "email"]
    config: dict[str, Any]
    events: list[Event] = Field(default_factory=list, max_length=3)
    min_severity: Severity = "low"
    enabled: bool = True


class ChannelPatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=64)
    config: dict[str, Any] | None = None
    events: list[Event] | None = Field(default=None, max_length=3)
    min_severity: Severity | None = None
    enabled: bool | None = None


class ChannelListQuery(QueryModel):
    cursor: Cursor | None = None
    limit: int = Field(default=50, ge=1, le=500)


def channel_view(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id,
        "name": channel.name,
        "kind": channel.kind,
        "config": channel.config,
        "has_secret": channel.has_secret,
        "events": list(channel.events),
        "min_severity": channel.min_severity,
        "enabled": channel.enabled,
        "created_at": channel.created_at,
        "updated_at": channel.updated_at,
    }


def _fetch_policy() -> Any:
    return current_context().parts.notifications.fetch


@blueprint.post("")
@requires(
    Role.ADMIN,
    body=ChannelCreateBody,
    replies={
        201: Reply(model=NotificationChannelView, description="Created", headers=("Location",))
    },
    errors=(409,),
)
async def create() -> Response:
    """Create a channel (409: the name is taken)."""
    body = await json_body(ChannelCreateBody)
    async with current_context().db.transaction() as conn:
        channel = await create_channel(conn, body.model_dump(), _fetch_policy())
        await record(
            conn,
            audit_context(),
            "notification_channel.created",
            target_type="notification_channel",
            target_id=channel.id,
            details={"name": channel.name, "kind": channel.kind},
        )
    return json_response(
        channel_view(channel),
        201,
        headers={"Location": f"/api/v1/notification-channels/{channel.id}"},
    )


@blueprint.get("")
@requires(Role.ADMIN, query=ChannelListQuery, replies={200: page_of(NotificationChannelView)})
async def list_() -> Response:
    """Channels newest first (never their secrets)."""
    query = query_params(ChannelListQuery)
    async with current_context().db.connection() as conn:
        channels = await list_channels(conn, cursor=query.cursor, limit=query.limit)
    return json_response(page([channel_view(c) for c in channels.items], channels.next_cursor))


@blueprint.get("/<int:channel_id>")
@requires(Role.ADMIN, replies={200: NotificationChannelView})
async def show(channel_id: int) -> Response:
    """One channel (never its secret)."""
    async with current_context().db.connection() as conn:
        return json_response(channel_view(await get_channel(conn, channel_id)))


@blueprint.patch("/<int:channel_id>")
@requires(Role.ADMIN, body=ChannelPatchBody, replies={200: NotificationChannelView}, errors=(409,))
async def patch(channel_id: int) -> Response:
    """Change the given fields; ``config`` fields given replace the stored ones, the
    secret is kept unless given, except when its destination changes (a webhook URL's
    origin, an SMTP host or port): then 422 unless it is given again."""
    body = await json_body(ChannelPatchBody)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    async with current_context().db.transaction() as conn:
        channel = await update_channel(conn, channel_id, changes, _fetch_policy())
        await record(
            conn,
            audit_context(),
            "notification_channel.updated",
            target_type="notification_channel",
            target_id=channel.id,
            details={"fields": sorted(changes)},
        )
    return json_response(channel_view(channel))


@blueprint.delete("/<int:channel_id>")
@requires(Role.ADMIN, replies={204: None})
async def delete(channel_id: int) -> Response:
    """Delete a channel; its pending deliveries are dropped."""
    async with current_context().db.transaction() as conn:
        await delete_channel(conn, channel_id)
        await record(
            conn,
            audit_context(),
            "notification_channel.deleted",
            target_type="notification_channel",
            target_id=channel_id,
        )
    return no_content()


@blueprint.post("/<int:channel_id>/test")
@requires(Role.ADMIN, replies={200: ChannelTestResult})
async def test(channel_id: int) -> Response:
    """Send a test message now (bounded by ``TRIAGED_NOTIFICATION_TIMEOUT_SECONDS``) and
    say whether the receiver accepted it."""
    context = current_context()
    actor = audit_context().actor
    delivered, reason = await send_test_message(
        context.db, channel_id, context.parts.notifications, f"{actor.type.value}:{actor.id}"
    )
    async with context.db.transaction() as conn:
        await record(
            conn,
            audit_context(),
            "notification_channel.tested",
            target_type="notification_channel",
            target_id=channel_id,
            details={"delivered": delivered},
        )
    return json_response({"delivered": delivered, "reason": reason or None})
