"""Documents: the intake receipt, the listing view and the details with history,
analysis and case."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (pydantic reads annotations at run time)
from typing import Any

from daemon.api.schemas.base import ResponseModel
from daemon.api.schemas.cases import CaseView  # noqa: TC001 (pydantic reads annotations at run time)
from daemon.modules.ingestion import DocumentState  # noqa: TC001 (pydantic reads annotations at run time)


class DocumentReceipt(ResponseModel):
    """A submitted document: its id and state ``received`` (or, replayed, the first
    answer to the same Idempotency-Key)."""

    id: int
    state: str
    title: str
    created_at: datetime


class DocumentView(ResponseModel):
    """A document as listed (no content)."""

    id: int
    title: str
    state: DocumentState
    source_id: int
    external_id: str | None
    url: str | None
    filename: str | None
    media_type: str | None
    size_bytes: int | None
    sha256: str | None
    failed_step: str | None
    error: str | None
    duplicate_of: int | None
    metadata: dict[str, Any]
    language: str | None
    category: str | None
    severity: str | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    retain_until: datetime | None


class HistoryEntry(ResponseModel):
    """One state change of a document."""

    at: datetime
    from_state: str | None
    to_state: str
    step: str | None
    detail: dict[str, Any]


class AnalysisView(ResponseModel):
    """One analysis run of a document."""

    id: int
    run: int
    category: str
    severity: str
    summary: str
    entities: list[dict[str, Any]]
    confidence: float
    rationale: str | None
    provider: str
    model: str
    version: str
    latency_ms: float
    calls: int
    repair_rounds: int
    prompt_tokens: int | None
    completion_tokens: int | None
    chunked: bool
    truncated: bool
    created_at: datetime


class DocumentDetails(DocumentView):
    """A document with its state history, current analysis, number of runs and case."""

    history: list[HistoryEntry]
    analysis: AnalysisView | None
    analysis_runs: int
    case: CaseView | None
