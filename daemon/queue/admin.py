"""Operating the queue: look at jobs, cancel and retry them, pause and configure queues.

Every function takes a connection and runs in the caller's transaction; none commits
(``async with pool.transaction() as conn`` around a call is the usual unit of work).
Refusals (``JobNotFound``, ``InvalidJobState``, ``ValueError``) are decided without a
failing statement, so the caller's transaction stays usable after them (one race in
:func:`retry_job` is the exception, and says so).

Effects on running workers:

* :func:`cancel_job` of an ``active`` job drops its lease. The worker running it finds
  out at its next heartbeat (every third of the lease) and cancels the handler; an
  outcome it reports before that is fenced out (the lease token no longer matches), so
  the job stays ``cancelled``.
* :func:`pause_queue` stops claims at once (every claim reads the flag); running jobs go
  on. :func:`resume_queue` and :func:`retry_job` notify the queue's workers.
* :func:`configure_queue`: claims read ``global_concurrency`` directly, but a worker
  also caches a queue's policy (defaults of backoff and timeout, and whether claims
  take the cap's lock) for up to 5 s. ``max_attempts`` applies to jobs enqueued later.
"""

from __future__ import annotations

import enum
import math
import re
from typing import TYPE_CHECKING, Any, Literal

import psycopg

from daemon.queue import admin_store
from daemon.queue.admin_records import JobRecord, QueueStats
from daemon.queue.jobs import (
    DEFAULT_BACKOFF_BASE_SECONDS,
    DEFAULT_BACKOFF_MAX_SECONDS,
    InvalidJobState,
    JobNotFound,
    JobState,
)
from daemon.queue.store import QueuePolicy
from daemon.shared.pagination import Page, decode_cursor, fetch_limit, page_of

if TYPE_CHECKING:
    from daemon.shared.db.psycopg_trio import TrioConnection

MAX_LIST_LIMIT = 1000
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")  # as the CHECK of queues.name
_RETRYABLE = (JobState.FAILED, JobState.CANCELLED)


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Literal[_Unset.UNSET] = _Unset.UNSET
"""``configure_queue``'s default for every field: leave it as it is."""


# -- jobs ------------------------------------------------------------------------------


async def get_job(conn: TrioConnection, job_id: int) -> JobRecord:
    """The job with this id.

    Raises:
        JobNotFound: no such job (never enqueued, or purged by retention).
    """
    row = await admin_store.select_job(conn, job_id)
    if row is None:
        raise JobNotFound(f"job {job_id} not found")
    return JobRecord.from_row(row)


async def list_jobs(
    conn: TrioConnection,
    *,
    queue: str | None = None,
    state: JobState | str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[JobRecord]:
    """A page of jobs, newest (highest id) first, optionally of one queue and/or state;
    ``cursor`` is the previous page's ``next_cursor``.

    Raises:
        ValueError: ``state`` is not a job state, or ``limit`` is not in 1..1000.
        ValidationFailed: a malformed cursor.
    """
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    state_value = None if state is None else JobState(state).value
    rows = await admin_store.select_jobs(
        conn,
        queue=queue,
        state=state_value,
        before_id=decode_cursor(cursor),
        limit=fetch_limit(limit),
    )
    return page_of([JobRecord.from_row(row) for row in rows], limit, key=lambda j: j.id)


async def cancel_job(conn: TrioConnection, job_id: int) -> JobState:
    """Cancel a ``created``, ``retry`` or ``active`` job; the state it was in.

    A cancelled active job's handler is cancelled by its worker at the next heartbeat;
    whatever that attempt reports is dropped (see the module docstring). Cancelling is
    final unless an operator retries the job.

    Raises:
        JobNotFound: no such job.
        InvalidJobState: the job is already finished (completed, cancelled or failed).
    """
    before = await admin_store.cancel_live_job(conn, job_id)
    if before is not None:
        return JobState(before)
    state = await _state_of(conn, job_id)
    raise InvalidJobState(
        f"job {job_id} is {state}: only created, retry or active jobs can be cancelled"
    )


async def retry_job(conn: TrioConnection, job_id: int) -> None:
    """Run a ``failed`` or ``cancelled`` job again: back to ``created``, due now, with
    its attempts reset to 0 (``last_error`` is kept until the next attempt ends). The
    queue's workers are notified when the transaction commits.

    Raises:
        JobNotFound: no such job.
        InvalidJobState: the job is not failed or cancelled, or another live job of its
            queue holds its dedup key (if that job is enqueued concurrently, the
            caller's transaction is left aborted).
    """
    try:
        retried = await admin_store.retry_finished_job(conn, job_id)
    except psycopg.errors.UniqueViolation as exc:
        raise InvalidJobState(_dedup_held(job_id)) from exc
    if not retried:
        state = await _state_of(conn, job_id)
        if state in _RETRYABLE:
            raise InvalidJobState(_dedup_held(job_id))
        raise InvalidJobState(
            f"job {job_id} is {state}: only failed or cancelled jobs can be retried"
        )


def _dedup_held(job_id: int) -> str:
    return f"job {job_id} cannot run again: a live job of its queue has its dedup key"


async def _state_of(conn: TrioConnection, job_id: int) -> JobState:
    state = await admin_store.job_state(conn, job_id)
    if state is None:
        raise JobNotFound(f"job {job_id} not found")
    return JobState(state)


# -- queues ----------------------------------------------------------------------------


def check_queue_name(name: str) -> str:
    """``name`` if it is a valid queue name (1 to 100 of ``A-Z a-z 0-9 _ . : -``).

    Raises:
        ValueError: it is not.
    """
    if not _QUEUE_NAME.fullmatch(name):
        raise ValueError(
            f"invalid queue name {name!r}: 1 to 100 characters among A-Z a-z 0-9 _ . : -"
        )
    return name


async def pause_queue(conn: TrioConnection, name: str) -> None:
    """Stop claims of the queue's jobs (running ones go on); creates its policy row if
    needed. Idempotent.

    Raises:
        ValueError: an invalid queue name.
    """
    await admin_store.set_paused(conn, check_queue_name(name), True)


async def resume_queue(conn: TrioConnection, name: str) -> None:
    """Let claims of the queue's jobs resume, and notify its workers. Idempotent.

    Raises:
        ValueError: an invalid queue name.
    """
    await admin_store.set_paused(conn, check_queue_name(name), False)


async def configure_queue(
    conn: TrioConnection,
    name: str,
    *,
    global_concurrency: int | _Unset | None = UNSET,
    max_attempts: int | _Unset = UNSET,
    backoff_base_seconds: float | _Unset = UNSET,
    backoff_max_seconds: float | _Unset = UNSET,
    timeout_seconds: float | _Unset | None = UNSET,
    dead_letter_queue: str | _Unset | None = UNSET,
    retain_completed_seconds: float | _Unset | None = UNSET,
    retain_failed_seconds: float | _Unset | None = UNSET,
) -> QueuePolicy:
    """Create or update a queue's policy; the policy as stored afterwards.

    Only the fields given change; ``None`` clears a field that may be empty (no global
    cap, no default timeout, no dead-letter queue, the process's retention). With no
    field given, the queue gets a policy row with the defaults if it had none.

    * ``global_concurrency``: most jobs of the queue active at once, all workers together.
    * ``max_attempts``, ``backoff_*``: defaults for jobs that do not set their own
      (``max_attempts`` is fixed when a job is enqueued).
    * ``timeout_seconds``: default per-attempt timeout.
    * ``dead_letter_queue``: a job of this queue that fails for good is copied there.
    * ``retain_*_seconds``: how long finished jobs are kept (failed covers cancelled).

    Raises:
        ValueError: an invalid name or value (checked before anything is written).
    """
    check_queue_name(name)
    fields: dict[str, Any] = {}
    if global_concurrency is not UNSET:
        if global_concurrency is not None and not _positive_int(global_concurrency):
            raise ValueError("global_concurrency must be a positive integer or None")
        fields["global_concurrency"] = global_concurrency
    if max_attempts is not UNSET:
        if not _positive_int(max_attempts):
            raise ValueError("max_attempts must be a positive integer")
        fields["max_attempts"] = max_attempts
    for key, value in (
        ("backoff_base_seconds", backoff_base_seconds),
        ("backoff_max_seconds", backoff_max_seconds),
    ):
        if value is not UNSET:
            if not _seconds(value, allow_zero=True):
                raise ValueError(f"{key} must be a finite number >= 0")
            fields[key] = float(value)
    if timeout_seconds is not UNSET:
        if timeout_seconds is not None and not _seconds(timeout_seconds, allow_zero=False):
            raise ValueError("timeout_seconds must be a finite number > 0 or None")
        fields["timeout_seconds"] = timeout_seconds
    if dead_letter_queue is not UNSET:
        if dead_letter_queue is not None:
            check_queue_name(dead_letter_queue)
            if dead_letter_queue == name:
                raise ValueError("a queue cannot be its own dead-letter queue")
        fields["dead_letter_queue"] = dead_letter_queue
    for key, value in (
        ("retain_completed_seconds", retain_completed_seconds),
        ("retain_failed_seconds", retain_failed_seconds),
    ):
        if value is not UNSET:
            if value is not None and not _seconds(value, allow_zero=True):
                raise ValueError(f"{key} must be a finite number >= 0 or None")
            fields[key] = value

    return QueuePolicy(*await admin_store.upsert_policy(conn, name, fields))


async def queue_stats(conn: TrioConnection) -> list[QueueStats]:
    """Every queue that has jobs or a policy row, by name.

    Counts every job of the table (a full scan: meant for operators and a metrics
    scrape, not for a hot path).
    """
    stats = []
    for row in await admin_store.queue_stats_rows(conn):
        (
            name,
            configured,
            created,
            retry,
            active,
            completed,
            cancelled,
            failed,
            oldest,
            paused,
            cap,
            max_attempts,
            backoff_base,
            backoff_max,
            timeout,
            dead_letter,
            retain_completed,
            retain_failed,
        ) = row
        policy = QueuePolicy(
            paused=paused,
            global_concurrency=cap,
            max_attempts=max_attempts,  # the queue's, else the default (from SQL)
            backoff_base_seconds=(
                DEFAULT_BACKOFF_BASE_SECONDS if backoff_base is None else backoff_base
            ),
            backoff_max_seconds=(
                DEFAULT_BACKOFF_MAX_SECONDS if backoff_max is None else backoff_max
            ),
            timeout_seconds=timeout,
            dead_letter_queue=dead_letter,
            retain_completed_seconds=retain_completed,
            retain_failed_seconds=retain_failed,
        )
        stats.append(
            QueueStats(
                name=name,
                configured=configured,
                created=created,
                retry=retry,
                active=active,
                completed=completed,
                cancelled=cancelled,
                failed=failed,
                oldest_available_seconds=oldest,
                policy=policy,
            )
        )
    return stats


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _seconds(value: object, *, allow_zero: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
