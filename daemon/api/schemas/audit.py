"""Audit log events."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (pydantic reads annotations at run time)
from typing import Any

from daemon.api.schemas.base import ResponseModel
from daemon.modules.audit import ActorType  # noqa: TC001 (pydantic reads annotations at run time)


class AuditActor(ResponseModel):
    type: ActorType
    id: int | None


class AuditTarget(ResponseModel):
    type: str | None
    id: str | None


class AuditEventView(ResponseModel):
    """One audit event."""

    id: int
    at: datetime
    actor: AuditActor
    action: str
    target: AuditTarget
    client_addr: str | None
    request_id: str | None
    details: dict[str, Any]
