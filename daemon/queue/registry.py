"""Which handler runs each queue: the registry the poller is built from.

A single-job handler (:data:`Handler`) is stored as a batch handler of one whose result
is wrapped in :class:`Returned`, so the executor treats both kinds alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.queue.jobs import Job

Handler = Callable[[Job], Awaitable[Any]]
# Given 1..batch_size jobs claimed together; returns job id -> result, or -> an Exception
# instance meaning what that exception raised by a single-job handler would mean.
BatchHandler = Callable[[Sequence[Job]], Awaitable[Mapping[int, Any]]]


@dataclass(frozen=True)
class Registration:
    queue: str
    handler: BatchHandler  # a single-job handler is wrapped as a batch handler of one
    concurrency: int
    batch_size: int = 1


class HandlerRegistry:
    """Which handler runs each queue, and how many of its jobs run at once here."""

    def __init__(self, default_concurrency: int = 10) -> None:
        self.default_concurrency = default_concurrency
        self._registrations: dict[str, Registration] = {}

    def register(self, queue: str, handler: Handler, *, concurrency: int | None = None) -> None:
        """Run ``handler`` for jobs of ``queue``, at most ``concurrency`` at once per process.

        Raises:
            ValueError: the queue already has a handler, or concurrency < 1.
        """

        async def one(jobs: Sequence[Job]) -> Mapping[int, Any]:
            (job,) = jobs
            return {job.id: Returned(await handler(job))}

        one.__qualname__ = getattr(handler, "__qualname__", "handler")
        self._add(queue, one, concurrency, batch_size=1)

    def register_batch(
        self,
        queue: str,
        handler: BatchHandler,
        *,
        batch_size: int,
        concurrency: int | None = None,
    ) -> None:
        """Run ``handler`` for batches of up to ``batch_size`` jobs of ``queue`` claimed
        together, at most ``concurrency`` jobs (over all batches) at once per process.

        The handler returns, for each job id, the job's result or an ``Exception``
        instance (``PermanentFailure``, ``RetryLater``, any other: what raising it from
        a single-job handler means). A job it leaves out fails (and is retried); an
        exception it raises is the outcome of every job of the batch. A batch runs
        until the earliest timeout of its jobs, and is cancelled only when the leases
        of all its jobs are lost (one lost job's outcome is dropped: the lease token
        fences it out).

        Raises:
            ValueError: the queue already has a handler, or concurrency or batch_size < 1.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._add(queue, handler, concurrency, batch_size=batch_size)

    def _add(
        self, queue: str, handler: BatchHandler, concurrency: int | None, *, batch_size: int
    ) -> None:
        if queue in self._registrations:
            raise ValueError(f"queue {queue!r} already has a handler")
        limit = self.default_concurrency if concurrency is None else concurrency
        if limit < 1:
            raise ValueError("concurrency must be at least 1")
        self._registrations[queue] = Registration(queue, handler, limit, batch_size)

    def __iter__(self) -> Iterator[Registration]:
        return iter(self._registrations.values())

    def __len__(self) -> int:
        return len(self._registrations)


@dataclass(frozen=True)
class Returned:
    """What a single-job handler returned: its result even if it is an exception."""

    value: Any
