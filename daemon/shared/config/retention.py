"""Retention: how long each kind of data is kept, when the purge runs and how it
batches, and the key that signs the audit log's checkpoints.

A group of fields of :class:`daemon.shared.config.Settings` (field ``x`` is read from
``TRIAGED_X``). Completed documents keep ``document_retention_days`` (ingestion group);
finished jobs and expired sessions have their own settings (database and auth groups).
A period counts from when the row reached its end (see docs/retention.md); a changed
period applies to existing rows at the next purge."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator

_DAYS = {"gt": 0, "le": 36_500}


class RetentionSettings(BaseModel):
    """Retention: periods per kind, the purge's schedule and batches, audit checkpoints."""

    retention_failed_documents_days: float = Field(
        default=90.0, **_DAYS, description="Failed documents are kept this long after failing."
    )
    retention_duplicate_documents_days: float = Field(
        default=30.0,
        **_DAYS,
        description="Duplicate documents are kept this long after being found duplicates.",
    )
    retention_resolved_cases_days: float = Field(
        default=365.0,
        **_DAYS,
        description="Resolved and closed cases are kept this long after resolution; a "
        "document with a case is kept at least as long as its case.",
    )
    retention_document_history_days: float = Field(
        default=365.0,
        **_DAYS,
        description="Document state-change events (history) older than this are deleted.",
    )
    retention_audit_events_days: float = Field(
        default=730.0,
        **_DAYS,
        description="Audit events older than this are deleted (oldest first, leaving a "
        "signed checkpoint).",
    )
    retention_purge_time: str = Field(
        default="03:30",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="Local time (HH:MM, in retention_purge_timezone) the purge runs daily; "
        "any other timing: `triaged schedules set retention.purge --cron ...`.",
    )
    retention_purge_timezone: str = Field(
        default="UTC", max_length=100, description="IANA time zone of retention_purge_time."
    )
    retention_batch_rows: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="Rows the purge deletes per transaction (at most).",
    )
    retention_batch_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="Time limit of one purge transaction; a batch that hits it is retried "
        "with half as many rows.",
    )
    audit_checkpoint_key: SecretStr | None = Field(
        default=None,
        description="Key (at least 16 characters) signing the audit log checkpoints "
        "(HMAC-SHA256). Unset: a random key stored in the database at install.",
    )

    @field_validator("audit_checkpoint_key", mode="before")
    @classmethod
    def _key(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and len(text) < 16:
            raise ValueError("must be at least 16 characters")
        return value
