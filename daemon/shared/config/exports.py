"""CSV exports: how many may run at once in one process.

A group of fields of :class:`daemon.shared.config.Settings` (field ``x`` is read from
``TRIAGED_X``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ExportSettings(BaseModel):
    """CSV exports: how many may run at once in one process."""

    export_max_concurrent: int = Field(
        default=2,
        ge=1,
        le=100,
        description="CSV exports one process streams at once (each holds one database "
        "connection for its whole run); more get 503 with Retry-After. Keep it well "
        "below db_pool_max_size.",
    )
