"""Users, API keys, logins and the caller's identity."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (pydantic reads annotations at run time)

from daemon.api.schemas.base import ResponseModel
from daemon.modules.auth import PrincipalKind, Role  # noqa: TC001 (pydantic reads annotations at run time)


class UserView(ResponseModel):
    """A user account (never its password hash)."""

    id: int
    email: str
    display_name: str
    role: Role
    active: bool
    created_at: datetime
    updated_at: datetime
    password_changed_at: datetime


class ApiKeyView(ResponseModel):
    """An API key (never its secret)."""

    id: int
    name: str
    prefix: str
    role: Role
    created_by: int | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyView):
    """A new API key with its secret ``key``, shown this once."""

    key: str


class LoginAnswer(ResponseModel):
    """A session's bearer token, shown this once."""

    token: str
    token_type: str
    expires_at: datetime
    user: UserView


class Me(ResponseModel):
    """Who is calling; ``user`` only for a login session."""

    kind: PrincipalKind
    id: int
    name: str
    role: Role
    expires_at: datetime | None
    user: UserView | None = None


class PasswordChanged(ResponseModel):
    """How many other sessions of the caller were revoked."""

    revoked_sessions: int
