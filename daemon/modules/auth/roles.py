"""Roles and principals (who is calling). Pure: no I/O."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import attrs

from daemon.modules.audit import Actor, ActorType
from daemon.modules.auth.errors import PermissionDenied

if TYPE_CHECKING:
    from datetime import datetime


class Role(StrEnum):
    """What a user or API key may do; values equal the ``user_role`` enum in the database.

    Ordered: admin (everything) > analyst (read and work, upload, export) > viewer (read,
    export). A role *satisfies* a required role when it ranks at least as high.
    """

    ADMIN = "admin"
    ANALYST = "analyst"
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def satisfies(self, required: Role) -> bool:
        return self.rank >= required.rank


_RANK = {Role.VIEWER: 1, Role.ANALYST: 2, Role.ADMIN: 3}


class PrincipalKind(StrEnum):
    USER = "user"  # a login session
    API_KEY = "api_key"


@attrs.frozen(kw_only=True)
class Principal:
    """An authenticated caller: a user's session or an API key.

    ``id`` is the user id or the API key id (see ``kind``); ``session_id`` is set for
    sessions only. ``name`` is the user's email or the key's name.
    """

    kind: PrincipalKind
    id: int
    role: Role
    name: str
    session_id: int | None = None
    expires_at: datetime | None = None

    @property
    def user_id(self) -> int | None:
        return self.id if self.kind is PrincipalKind.USER else None

    @property
    def actor(self) -> Actor:
        kind = ActorType.USER if self.kind is PrincipalKind.USER else ActorType.API_KEY
        return Actor(type=kind, id=self.id)

    def require(self, role: Role) -> None:
        """Raises PermissionDenied unless this principal's role satisfies ``role``."""
        if not self.role.satisfies(role):
            raise PermissionDenied(f"this needs the {role.value} role (you are {self.role.value})")
