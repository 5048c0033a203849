"""``/api/v1/users``: user administration (admins only)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from quart import Blueprint, Response

from daemon.api.access import Reply, requires
from daemon.api.authn import audit_context
from daemon.api.body import json_body
from daemon.api.context import current_context
from daemon.api.field_types import JsonBool, QueryBool  # noqa: TC001 (pydantic reads it at run time)
from daemon.api.query import Cursor, QueryModel, query_params
from daemon.api.responses import json_response, no_content, page
from daemon.api.schemas.accounts import UserView
from daemon.api.schemas.base import page_of
from daemon.modules.auth import (
    Role,
    User,
    create_user,
    delete_user,
    get_user,
    list_users,
    update_user,
)

blueprint = Blueprint("users", __name__, url_prefix="/api/v1/users")


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "role": user.role.value,
        "active": user.active,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
        "password_changed_at": user.password_changed_at,
    }


class UserCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=1000)
    password: str = Field(max_length=10_000)
    role: Role
    display_name: str = Field(default="", max_length=1000)


class UserUpdateBody(BaseModel):
    """Fields left out stay as they are; ``password`` is an admin reset (revokes the
    user's sessions)."""

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=1000)
    role: Role | None = None
    active: JsonBool | None = None
    password: str | None = Field(default=None, max_length=10_000)

    @model_validator(mode="after")
    def _something(self) -> UserUpdateBody:
        if not self.model_fields_set:
            raise ValueError("give at least one of display_name, role, active, password")
        return self


class UserListQuery(QueryModel):
    role: Role | None = None
    active: QueryBool | None = None
    cursor: Cursor | None = None
    limit: int = Field(default=100, ge=1, le=500)


@blueprint.post("")
@requires(
    Role.ADMIN,
    body=UserCreateBody,
    replies={201: Reply(model=UserView, description="Created", headers=("Location",))},
    errors=(409,),
)
async def create() -> Response:
    """Create a user; 409 if the email (in any case or Unicode spelling) is taken; 422 if
    it has control or invisible characters or mixes Latin with Cyrillic or Greek letters
    in a part."""
    body = await json_body(UserCreateBody)
    context = current_context()
    user = await create_user(
        context.db,
        email=body.email,
        password=body.password,
        role=body.role,
        display_name=body.display_name,
        policy=context.auth_policy,
        context=audit_context(),
    )
    return json_response(user_view(user), 201, headers={"Location": f"/api/v1/users/{user.id}"})


@blueprint.get("")
@requires(Role.ADMIN, query=UserListQuery, replies={200: page_of(UserView)})
async def list_() -> Response:
    """Users by id, filtered by role and active flag; cursor pagination."""
    query = query_params(UserListQuery)
    async with current_context().db.connection() as conn:
        users = await list_users(
            conn,
            role=query.role,
            active=query.active,
            cursor=query.cursor,
            limit=query.limit,
        )
    return json_response(page([user_view(u) for u in users.items], users.next_cursor))


@blueprint.get("/<int:user_id>")
@requires(Role.ADMIN, replies={200: UserView})
async def show(user_id: int) -> Response:
    """One user."""
    async with current_context().db.connection() as conn:
        return json_response(user_view(await get_user(conn, user_id)))


@blueprint.patch("/<int:user_id>")
@requires(Role.ADMIN, body=UserUpdateBody, replies={200: UserView}, errors=(409,))
async def update(user_id: int) -> Response:
    """Change a user's name, role, active flag or password, all or nothing.

    Disabling a user or resetting their password revokes their sessions; the last active
    admin cannot be demoted or disabled (409).
    """
    body = await json_body(UserUpdateBody)
    context = current_context()
    user = await update_user(
        context.db,
        user_id,
        display_name=body.display_name,
        role=body.role,
        active=body.active,
        password=body.password,
        policy=context.auth_policy,
        context=audit_context(),
    )
    return json_response(user_view(user))


@blueprint.delete("/<int:user_id>")
@requires(Role.ADMIN, replies={204: None}, errors=(409,))
async def delete(user_id: int) -> Response:
    """Delete a user and their sessions; the last active admin cannot be deleted (409)."""
    await delete_user(current_context().db, user_id, context=audit_context())
    return no_content()
