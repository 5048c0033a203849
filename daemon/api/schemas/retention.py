"""Legal holds and retention run reports."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (pydantic reads annotations at run time)

from daemon.api.schemas.base import ResponseModel


class HoldView(ResponseModel):
    """A legal hold on a document or a case; ``released_at`` null while it stands."""

    id: int
    target_type: str
    target_id: int
    reason: str
    created_by: str | None
    created_at: datetime
    released_at: datetime | None
    released_by: str | None
    release_reason: str | None


class RetentionKindCounts(ResponseModel):
    """What a run did to one kind: rows deleted, rows kept by holds (counted when the run
    finishes), for documents rows kept because their case remains, seconds spent."""

    deleted: int
    seconds: float
    held: int | None = None
    kept_by_cases: int | None = None


class RetentionRunView(ResponseModel):
    """A purge run (``finished_at`` null: running, or interrupted and to be continued);
    ``report`` by kind: resolved_cases, completed_documents, failed_documents,
    duplicate_documents, document_history, audit_events."""

    id: int
    job_id: int | None
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    report: dict[str, RetentionKindCounts]
