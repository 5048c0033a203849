"""Notification channels (never their secrets)."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (pydantic reads annotations at run time)
from typing import Any, Literal

from daemon.api.schemas.base import ResponseModel


class NotificationChannelView(ResponseModel):
    """A notification channel. ``config`` is what may be shown (a webhook's ``url`` and
    ``format``; an email's ``to``, ``host``, ``port``, ``security``, ``username``,
    ``from``); the secret (webhook ``secret``, SMTP ``password``) is write-only:
    ``has_secret`` says whether one is stored."""

    id: int
    name: str
    kind: Literal["webhook", "email"]
    config: dict[str, Any]
    has_secret: bool
    events: list[Literal["opened", "escalated", "resolved"]]
    min_severity: Literal["low", "medium", "high", "critical"]
    enabled: bool
    created_at: datetime
    updated_at: datetime


class ChannelTestResult(ResponseModel):
    """Whether the test message was accepted by the receiver, and why not."""

    delivered: bool
    reason: str | None
