"""Running one batch of claimed jobs (a single job is a batch of one) and normalising
what the handler did into the closed outcome set of :mod:`daemon.queue.outcomes`.

A batch runs under its own cancel scope (:class:`Batch`), cancelled by the heartbeat
once every one of its jobs has lost its lease, and under the earliest timeout of its
jobs. An exception raised inside the handler's own nursery arrives wrapped in an
ExceptionGroup and means what it means raised alone. Cancellation by the caller (the
drain deadline) propagates: the batch then has no outcome.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from daemon.queue.jobs import PermanentFailure, RetryLater
from daemon.queue.outcomes import Completed, Failed, Outcome, Snoozed
from daemon.queue.registry import Returned
from daemon.queue.store import encode_result

if TYPE_CHECKING:
    import uuid
    from collections.abc import Iterator, Mapping, Sequence

    from daemon.queue.jobs import Job
    from daemon.queue.registry import Registration


@dataclass(eq=False)
class Batch:
    """Jobs run by one handler call, under one cancel scope: cancelled once every one
    of its jobs has lost its lease (for a single job: when it has)."""

    jobs: Sequence[Job]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    lost: set[tuple[int, uuid.UUID]] = field(default_factory=set)

    def lose(self, job: Job) -> None:
        self.lost.add((job.id, job.lease_token))
        if len(self.lost) == len(self.jobs):
            self.scope.cancel()


async def execute(registration: Registration, batch: Batch) -> list[Outcome] | None:
    """Run ``batch`` through the registration's handler; one outcome per job, or None
    when the heartbeat cancelled the batch (every lease lost)."""
    jobs = batch.jobs
    timeouts = [job.timeout for job in jobs if job.timeout]
    timeout = min(timeouts, default=math.inf)
    try:
        with batch.scope:
            with trio.move_on_after(timeout) as timeout_scope:
                results = await registration.handler(jobs)
            if timeout_scope.cancelled_caught:
                error = f"timed out after {timeout:g}s"
                return [Failed(job, error, permanent=False) for job in jobs]
            return [outcome_of_result(job, results) for job in jobs]
        return None  # the heartbeat cancelled the batch: every lease was lost
    except Exception as exc:
        return [outcome_of_error(job, exc) for job in jobs]


def outcome_of_result(job: Job, results: Mapping[int, Any]) -> Outcome:
    if job.id not in results:
        return Failed(job, "the batch handler returned no outcome for this job", permanent=False)
    result = results[job.id]
    if isinstance(result, Returned):  # a single-job handler's return value, whatever it is
        result = result.value
    elif isinstance(result, Exception):
        return outcome_of_error(job, result)
    try:
        return Completed(job, encode_result(result))
    except ValueError as exc:  # one job's bad result must not block the others
        return Failed(job, str(exc), permanent=False)


def outcome_of_error(job: Job, exc: Exception) -> Outcome:
    """What a handler's exception means; one raised inside the handler's own nursery
    arrives wrapped in an ExceptionGroup and means the same as raised alone."""
    leaves = list(_leaves(exc))
    permanent = [e for e in leaves if isinstance(e, PermanentFailure)]
    if permanent:
        return Failed(job, f"permanent failure: {permanent[0]}", permanent=True)
    if leaves and all(isinstance(e, RetryLater) for e in leaves):
        return Snoozed(job, max(e.delay for e in leaves if isinstance(e, RetryLater)))
    first = leaves[0] if len(leaves) == 1 else exc
    return Failed(job, f"{type(first).__name__}: {first}", permanent=False)


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc
