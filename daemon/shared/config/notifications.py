"""Escalation and notifications: the escalation policy, its check, deliveries.

A group of fields of :class:`daemon.shared.config.Settings` (field ``x`` is read from
``TRIAGED_X``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from pathlib import Path


class NotificationSettings(BaseModel):
    """Escalation and notifications: the escalation policy, its check, deliveries."""

    escalation_policy: str | None = Field(
        default=None,
        description="The escalation policy as one line of JSON: per severity a ladder of "
        'levels, e.g. {"high": {"levels": [{"after": "0s", "channels": ["ops-webhook"]}, '
        '{"after": "1h", "channels": ["lead-email"], "assign_to": "lead@example.com"}]}}; '
        "unset: cases never escalate.",
    )
    escalation_policy_file: Path | None = Field(
        default=None,
        description="A file holding the escalation policy's JSON (instead of "
        "TRIAGED_ESCALATION_POLICY; setting both is an error).",
    )
    escalation_check_interval_seconds: float = Field(
        default=60.0, ge=1, le=3600, description="How often the escalation check runs."
    )
    notification_max_attempts: int = Field(
        default=12,
        ge=1,
        le=100,
        description="Attempts of one notification delivery before it is dead-lettered "
        "(retried with exponential backoff).",
    )
    notification_timeout_seconds: float = Field(
        default=15.0, gt=0, le=300, description="Time one delivery attempt may take."
    )
    notification_backoff_max_seconds: float = Field(
        default=120.0,
        gt=0,
        le=86400,
        description="Longest wait between two attempts of a delivery (exponential backoff "
        "with full jitter from 1 s up to this).",
    )
