"""Sources: polling of pull sources (HTTP, feeds, directories) and their failures.

A group of fields of :class:`daemon.shared.config.Settings` (field ``x`` is read from
``TRIAGED_X``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SourcesSettings(BaseModel):
    """Sources: polling of pull sources and their failures."""

    source_max_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Consecutive failed polls after which a source is disabled (an admin "
        "enables it again).",
    )
    source_backoff_base_seconds: float = Field(
        default=30.0,
        ge=0,
        le=86400,
        description="After a failed poll, scheduled polls pause this long, doubling with "
        "each further failure.",
    )
    source_backoff_max_seconds: float = Field(
        default=3600.0, ge=0, le=7 * 86400, description="Longest pause after failed polls."
    )
    source_poll_concurrency: int = Field(
        default=4, ge=1, le=100, description="Polls this process runs at once."
    )
