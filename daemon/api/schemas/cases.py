"""Cases opened by the pipeline's routing step, their comments and history."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (pydantic reads annotations at run time)
from typing import Any

from daemon.api.schemas.base import ResponseModel


class CaseView(ResponseModel):
    """One case. ``version`` is its ETag (``"<version>"``), for If-Match."""

    id: int
    document_id: int
    document_title: str
    analysis_id: int | None
    status: str
    severity: str
    category: str | None
    sla_due_at: datetime | None
    overdue: bool
    assignee: str | None
    assignee_user_id: int | None
    tags: list[str]
    reason: str
    resolution: str | None
    resolution_note: str | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    escalation_level: int
    escalation_due_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class CommentView(ResponseModel):
    """One comment on a case."""

    id: int
    case_id: int
    author: str
    author_user_id: int | None
    body: str
    created_at: datetime


class CaseEventView(ResponseModel):
    """One event of a case's history: what (``kind``), who (``actor``: ``user:3``,
    ``api_key:2``, ``cli:<os user>``, ``system``), when, and its detail."""

    id: int
    case_id: int
    kind: str
    actor: str
    at: datetime
    detail: dict[str, Any]
