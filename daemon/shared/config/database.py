"""The database pool and the job queue's engine.

A group of fields of :class:`daemon.shared.config.Settings` (field ``x`` is read from
``TRIAGED_X``)."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator

from daemon.shared.config.values import (
    DEFAULT_WORKER_CONCURRENCY,
)


class DatabaseSettings(BaseModel):
    """The database pool and the job queue's engine."""

    worker_concurrency: int = Field(
        default=DEFAULT_WORKER_CONCURRENCY,
        ge=1,
        le=1000,
        description="Jobs this process runs at once (default for queues without their own).",
    )
    cpu_processes: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="CPU worker processes for extraction, normalization, heuristic analysis "
        "and feed parsing (each ~65 MB, started on first use); default: one fewer than the "
        "usable CPUs (the event loop keeps one), at least 1, at most 4.",
    )
    db_pool_min_size: int = Field(
        default=1, ge=0, le=100, description="Database connections kept open when idle."
    )
    db_pool_max_size: int = Field(
        default=10,
        ge=1,
        le=500,
        description="Most database connections this process's main pool opens (beside "
        "it: the queue's pool of 4 and LISTEN connections).",
    )
    db_acquire_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="How long a caller waits for a free database connection.",
    )
    db_max_lifetime_seconds: float = Field(
        default=3600.0, gt=0, description="Database connections are replaced after this age."
    )
    db_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=600, description="Timeout of one attempt to connect."
    )
    queue_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="Lease of a running job, renewed every third of it; a dead worker's "
        "jobs return this long after its last renewal.",
    )
    queue_poll_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        le=300,
        description="Look for jobs due without a notification this often (delayed jobs, "
        "retries, rescued jobs, polling-only mode).",
    )
    queue_listen: bool = Field(
        default=True,
        description="Wake workers by LISTEN/NOTIFY, and cache credential lookups emptied by "
        "it; false for poolers that drop LISTEN (workers poll, every request looks its "
        "token up).",
    )
    queue_rescue_interval_seconds: float = Field(
        default=2.0, gt=0, le=300, description="How often expired leases are looked for."
    )
    queue_retain_completed_seconds: float = Field(
        default=86_400.0,
        ge=0,
        description="Completed jobs are deleted after this long (unless their queue says "
        "otherwise).",
    )
    queue_retain_failed_seconds: float = Field(
        default=14 * 86_400.0,
        ge=0,
        description="Failed and cancelled jobs are deleted after this long (unless their "
        "queue says otherwise).",
    )
    scheduler_catch_up_seconds: float = Field(
        default=300.0,
        ge=0,
        le=30 * 86_400,
        description="After downtime, missed schedule slots younger than this still fire "
        "(once each); older ones are skipped and logged.",
    )

    @model_validator(mode="after")
    def _pool_bounds(self) -> Self:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("TRIAGED_DB_POOL_MIN_SIZE must not exceed TRIAGED_DB_POOL_MAX_SIZE")
        return self
