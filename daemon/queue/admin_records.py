"""What operators see of jobs and queues: :class:`JobRecord` and :class:`QueueStats`
(values, no I/O; built by :mod:`daemon.queue.admin` from its store's rows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from daemon.queue.jobs import JobState

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from daemon.queue.store import QueuePolicy


@attrs.frozen(kw_only=True)
class JobRecord:
    """A job row as operators see it (any state)."""

    id: int
    queue: str
    state: JobState
    payload: dict[str, Any]
    priority: int
    run_at: datetime
    attempts: int  # attempts started (a snoozed or released attempt is given back)
    max_attempts: int
    timeout_seconds: float | None  # None: the queue's timeout, if any
    dedup_key: str | None
    worker: str | None  # the last worker that claimed it
    last_error: str | None
    result: Any  # the handler's return value, once completed
    dead_letter_of: int | None  # the failed job this one is the dead-letter copy of
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_expires_at: datetime | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> JobRecord:
        """From a row of the ``get_job`` / ``list_jobs`` queries (same column order)."""
        (
            job_id,
            queue,
            state,
            payload,
            priority,
            run_at,
            attempts,
            max_attempts,
            timeout,
            dedup_key,
            worker,
            last_error,
            result,
            dead_letter_of,
            created_at,
            started_at,
            finished_at,
            lease_expires_at,
        ) = row
        return cls(
            id=job_id,
            queue=queue,
            state=JobState(state),
            payload=payload,
            priority=priority,
            run_at=run_at,
            attempts=attempts,
            max_attempts=max_attempts,
            timeout_seconds=timeout,
            dedup_key=dedup_key,
            worker=worker,
            last_error=last_error,
            result=result,
            dead_letter_of=dead_letter_of,
            created_at=created_at,
            started_at=started_at,
            finished_at=finished_at,
            lease_expires_at=lease_expires_at,
        )


@attrs.frozen(kw_only=True)
class QueueStats:
    """One queue: its jobs per state, its backlog's age and its effective policy.

    ``configured`` is False for a queue that has jobs but no policy row; its ``policy``
    is then the defaults. ``None`` retention means the process's default
    (``TRIAGED_QUEUE_RETAIN_*``).
    """

    name: str
    configured: bool
    created: int
    retry: int
    active: int
    completed: int
    cancelled: int
    failed: int
    oldest_available_seconds: float | None  # age of the oldest due job waiting; None: none
    policy: QueuePolicy

    @property
    def paused(self) -> bool:
        return self.policy.paused

    @property
    def total(self) -> int:
        return (
            self.created + self.retry + self.active + self.completed + self.cancelled + self.failed
        )

    def count(self, state: JobState) -> int:
        count: int = getattr(self, state.value)
        return count
