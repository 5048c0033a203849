"""``/api/v1/auth``: log in, log out, who am I, change my password."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, request

from daemon.api.access import public, requires
from daemon.api.authn import audit_context, bearer_token, current_principal
from daemon.api.body import json_body
from daemon.api.context import current_context
from daemon.api.responses import json_response, no_content
from daemon.api.routes.users import user_view
from daemon.api.schemas.accounts import LoginAnswer, Me, PasswordChanged
from daemon.modules.auth import (
    PrincipalKind,
    Role,
    change_own_password,
    get_user,
    login,
    logout,
)
from daemon.shared.logs import request_id_var

blueprint = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=1000)
    password: str = Field(max_length=10_000)


class PasswordChangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=10_000)
    new_password: str = Field(max_length=10_000)


@blueprint.post("/login")
@public(body=LoginBody, replies={200: LoginAnswer}, errors=(401, 429))
async def login_route() -> Response:
    """Log in with email and password; returns a bearer token, shown this once.

    Unknown email, wrong password and disabled user get the same 401 in the same time.
    Repeated failures are throttled per account and per client address: 429 with
    ``Retry-After`` (correct logins arriving together are never refused for each other).
    The email is found in any case or Unicode spelling; one with control or invisible
    characters gets 422.
    """
    body = await json_body(LoginBody)
    context = current_context()
    result = await login(
        context.db,
        body.email,
        body.password,
        policy=context.auth_policy,
        client_addr=request.remote_addr,
        request_id=request_id_var.get(),
    )
    return json_response(
        {
            "token": result.token,
            "token_type": "Bearer",
            "expires_at": result.expires_at,
            "user": user_view(result.user),
        }
    )


@blueprint.post("/logout")
@requires(Role.VIEWER, users_only=True, replies={204: None})
async def logout_route() -> Response:
    """Revoke the session whose token authenticates this request."""
    token = bearer_token(request.headers.get("Authorization"))
    await logout(current_context().db, token, context=audit_context())
    return no_content()


@blueprint.get("/me")
@requires(Role.VIEWER, replies={200: Me})
async def me() -> Response:
    """Who is calling: the user of the session, or the API key."""
    principal = current_principal()
    body: dict[str, object] = {
        "kind": principal.kind.value,
        "id": principal.id,
        "name": principal.name,
        "role": principal.role.value,
        "expires_at": principal.expires_at,
    }
    if principal.kind is PrincipalKind.USER:
        async with current_context().db.connection() as conn:
            body["user"] = user_view(await get_user(conn, principal.id))
    return json_response(body)


@blueprint.post("/password")
@requires(
    Role.VIEWER,
    users_only=True,
    body=PasswordChangeBody,
    replies={200: PasswordChanged},
    errors=(429,),
)
async def change_password() -> Response:
    """Change your own password; every other session of yours is revoked."""
    body = await json_body(PasswordChangeBody)
    context = current_context()
    revoked = await change_own_password(
        context.db,
        current_principal(),
        body.current_password,
        body.new_password,
        policy=context.auth_policy,
        context=audit_context(),
    )
    return json_response({"revoked_sessions": revoked})
