"""The body of every error response: RFC 9457 problem details (see
:mod:`daemon.api.problems`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FieldError(BaseModel):
    """One invalid field: its dotted path (or ``(body)``, ``(query)``) and why."""

    model_config = ConfigDict(extra="forbid")

    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None
