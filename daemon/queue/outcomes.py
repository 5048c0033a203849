"""The closed set of job outcomes: what running a job can come to.

A handler returns (:class:`Completed`), raises ``RetryLater`` (:class:`Snoozed`), raises
``PermanentFailure`` (:class:`Failed`, permanent), or raises anything else or times out
(:class:`Failed`, retried with backoff until ``max_attempts``). The executor
(:mod:`daemon.queue.executor`) turns a handler's result into one of these; the completer
(:mod:`daemon.queue.completer`) writes them. A job whose lease was lost has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.queue.jobs import Job


@dataclass(frozen=True)
class Completed:
    job: Job
    result: str | None  # JSON text, checked by store.encode_result


@dataclass(frozen=True)
class Failed:
    job: Job
    error: str
    permanent: bool


@dataclass(frozen=True)
class Snoozed:
    job: Job
    delay: float


Outcome = Completed | Failed | Snoozed
