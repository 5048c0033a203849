"""Sources and their polls (secrets never appear: ``secrets_set`` names the ones set)."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (pydantic reads annotations at run time)
from typing import Any

from daemon.api.schemas.base import ResponseModel


class SourceScheduleView(ResponseModel):
    interval_seconds: float | None = None
    cron: str | None = None
    timezone: str


class SourceLimitsView(ResponseModel):
    items_per_poll: int
    bytes_per_item: int
    timeout_seconds: float


class SourceView(ResponseModel):
    """A source: its definition (no secrets) and its health."""

    id: int
    name: str
    kind: str
    config: dict[str, Any]
    secrets_set: list[str]
    schedule: SourceScheduleView | None
    enabled: bool
    metadata: dict[str, Any]
    title_template: str
    limits: SourceLimitsView
    builtin: bool
    last_poll_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    next_poll_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class PollRequested(ResponseModel):
    """The poll job enqueued."""

    job_id: int
    source_id: int


class SourcePollView(ResponseModel):
    id: int
    job_id: int | None
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    items_seen: int
    documents_created: int
    error: str | None
    duration_ms: float | None
