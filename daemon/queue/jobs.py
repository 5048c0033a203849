"""Jobs, their states, their options, and what a handler may say about an attempt.

This module is pure: no I/O, usable in unit tests without a database.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import attrs

from daemon.shared.errors import DaemonError

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

JsonObject = Mapping[str, Any]

DEFAULT_BACKOFF_BASE_SECONDS = 1.0
DEFAULT_BACKOFF_MAX_SECONDS = 600.0


class JobState(StrEnum):
    """The states of a job; values equal the ``job_state`` enum in the database."""

    CREATED = "created"  # waiting for its first attempt (at run_at)
    RETRY = "retry"  # waiting for another attempt (at run_at)
    ACTIVE = "active"  # claimed by a worker, under a lease
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED)


class QueueError(DaemonError):
    """A job queue operation failed."""


class JobNotFound(QueueError):
    """No such job."""


class InvalidJobState(QueueError):
    """The job is not in a state that allows this operation."""


@attrs.frozen(kw_only=True)
class Backoff:
    """Exponential backoff with full jitter and a cap.

    The delay before retry ``n`` (``n`` = attempts made so far, from 1) is uniform in
    ``[0, min(max_seconds, base_seconds * 2 ** (n - 1))]`` ("full jitter"): retries of
    many jobs that failed together spread out instead of stampeding.
    """

    base_seconds: float = attrs.field(
        default=DEFAULT_BACKOFF_BASE_SECONDS, validator=attrs.validators.ge(0)
    )
    max_seconds: float = attrs.field(
        default=DEFAULT_BACKOFF_MAX_SECONDS, validator=attrs.validators.ge(0)
    )

    def ceiling(self, attempts: int) -> float:
        exponent = min(max(attempts - 1, 0), 62)
        return float(min(self.max_seconds, self.base_seconds * 2.0**exponent))

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        return (rng or random).uniform(0.0, self.ceiling(attempts))


@attrs.frozen(kw_only=True)
class JobSpec:
    """A job to enqueue. ``None`` options take the queue's policy (or the defaults)."""

    queue: str
    payload: JsonObject = attrs.field(factory=dict)
    priority: int = 0  # higher runs first
    run_at: datetime | None = None  # aware datetime; None: now
    max_attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None  # seconds per attempt
    dedup_key: str | None = None  # a live job with this key is returned instead

    def __attrs_post_init__(self) -> None:
        if not self.queue or len(self.queue) > 100:
            raise ValueError("queue name must have 1 to 100 characters")
        if self.run_at is not None and self.run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive")


@attrs.frozen(kw_only=True)
class Job:
    """A claimed job, as its handler sees it."""

    id: int
    queue: str
    payload: dict[str, Any]
    priority: int
    attempt: int  # 1 for the first attempt
    max_attempts: int
    timeout: float | None
    backoff: Backoff
    created_at: datetime
    run_at: datetime
    started_at: datetime
    lease_token: UUID

    @property
    def wait_seconds(self) -> float:
        """Time between becoming available (run_at) and starting."""
        return max(0.0, (self.started_at - self.run_at).total_seconds())


@attrs.frozen(kw_only=True)
class Enqueued:
    """The result of an enqueue: the job's id, and False when a live job with the same
    dedup key was returned instead of a new one."""

    id: int
    created: bool


class RetryLater(Exception):
    """Raised by a handler: run this job again after ``delay`` seconds.

    The attempt is given back (it does not count towards ``max_attempts``).
    """

    def __init__(self, delay: float, reason: str = "") -> None:
        if delay < 0:
            raise ValueError("delay must not be negative")
        self.delay = delay
        self.reason = reason
        super().__init__(f"retry later in {delay:g}s" + (f": {reason}" if reason else ""))


class PermanentFailure(Exception):
    """Raised by a handler: this job can never succeed; fail it without retries."""
