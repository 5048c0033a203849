"""``/api/v1/api-keys``: keys for machine clients (admins only)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response

from daemon.api.access import Reply, requires
from daemon.api.authn import audit_context
from daemon.api.body import json_body
from daemon.api.context import current_context
from daemon.api.field_types import DateTime, QueryBool  # noqa: TC001 (pydantic reads it at run time)
from daemon.api.query import QueryModel, query_params
from daemon.api.responses import json_response, no_content, page
from daemon.api.schemas.accounts import ApiKeyCreated, ApiKeyView
from daemon.api.schemas.base import page_of
from daemon.modules.auth import (
    ApiKey,
    Role,
    create_api_key,
    get_api_key,
    list_api_keys,
    revoke_api_key,
)

blueprint = Blueprint("api_keys", __name__, url_prefix="/api/v1/api-keys")


def api_key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "role": key.role.value,
        "created_by": key.created_by,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    }


class ApiKeyCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=1000)
    role: Role
    expires_at: DateTime | None = None


class ApiKeyListQuery(QueryModel):
    include_revoked: QueryBool = False


@blueprint.post("")
@requires(
    Role.ADMIN,
    body=ApiKeyCreateBody,
    replies={201: Reply(model=ApiKeyCreated, description="Created", headers=("Location",))},
)
async def create() -> Response:
    """Create a key; the answer's ``key`` is the secret, shown this once."""
    body = await json_body(ApiKeyCreateBody)
    created = await create_api_key(
        current_context().db,
        name=body.name,
        role=body.role,
        expires_at=body.expires_at,
        context=audit_context(),
    )
    view = api_key_view(created.key) | {"key": created.secret}
    return json_response(view, 201, headers={"Location": f"/api/v1/api-keys/{created.key.id}"})


@blueprint.get("")
@requires(Role.ADMIN, query=ApiKeyListQuery, replies={200: page_of(ApiKeyView)})
async def list_() -> Response:
    """Every live key (and revoked ones with ``include_revoked=true``); never the secrets."""
    query = query_params(ApiKeyListQuery)
    async with current_context().db.connection() as conn:
        keys = await list_api_keys(conn, include_revoked=query.include_revoked)
    return json_response(page([api_key_view(k) for k in keys], None))


@blueprint.get("/<int:key_id>")
@requires(Role.ADMIN, replies={200: ApiKeyView})
async def show(key_id: int) -> Response:
    """One key (never its secret)."""
    async with current_context().db.connection() as conn:
        return json_response(api_key_view(await get_api_key(conn, key_id)))


@blueprint.delete("/<int:key_id>")
@requires(Role.ADMIN, replies={204: None})
async def revoke(key_id: int) -> Response:
    """Revoke a key at once; revoking a revoked key is a no-op (204 all the same)."""
    await revoke_api_key(current_context().db, key_id, context=audit_context())
    return no_content()
