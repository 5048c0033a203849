"""Cases opened by the pipeline's routing step."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (pydantic reads annotations at run time)

from daemon.api.schemas.base import ResponseModel


class CaseView(ResponseModel):
    """One case."""

    id: int
    document_id: int
    document_title: str
    analysis_id: int | None
    status: str
    severity: str
    sla_due_at: datetime | None
    assignee: str | None
    tags: list[str]
    reason: str
    created_at: datetime
    updated_at: datetime
