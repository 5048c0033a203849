"""The poller: fetches jobs of registered queues and runs their handlers.

(Named so as not to collide with :mod:`daemon.worker`, the process that hosts it.)

Design note
-----------
One ``QueueWorker`` per process (the supervisor's poller group) runs, in its nursery:

* one **fetcher** per registered queue (:mod:`daemon.queue.fetcher`): it claims at most
  as many jobs as the queue has free slots (``FOR UPDATE SKIP LOCKED``) and starts each
  at once; with nothing (or less than asked) to claim it sleeps until it is kicked, by
  a NOTIFY or by the due scan;
* one **runner** task per claimed job, or per batch of jobs for a queue registered with
  a batch handler (:mod:`daemon.queue.executor`): the handler runs under a cancel scope
  that the heartbeat cancels when the lease is lost (for a batch: the leases of all its
  jobs) and the job's timeout (a batch's earliest); the outcomes (the closed set of
  :mod:`daemon.queue.outcomes`) go to the completer;
* the **completer** (:mod:`daemon.queue.completer`), which writes outcomes in batches
  (all completions of a batch in one statement) so that a slot is never held waiting
  for a commit;
* the **heartbeat** (:mod:`daemon.queue.heartbeat`), which renews the leases of all
  running jobs in one statement every third of the lease; a job whose lease is gone
  (rescued after a stall, or cancelled by an operator) has its handler cancelled and its
  outcome dropped;
* the **listener** (:mod:`daemon.queue.listener`), a LISTEN connection that wakes
  fetchers on enqueue (unless ``listen`` is off, for poolers that drop LISTEN);
* the **due scan** (:mod:`daemon.queue.due_scan`): every poll interval, one statement
  finds the queues with a job due now (delayed, retried, rescued, or enqueued unheard)
  and wakes their fetchers, in place of an empty claim per queue.

Handlers are registered in a :class:`~daemon.queue.registry.HandlerRegistry`.

Every state change of a claimed job is fenced by its lease token: a worker that lost
the lease can neither complete nor fail nor release the job.

Drain (``request_stop``): fetchers stop; running handlers go on; once they are all done
the completer flushes and ``run`` returns. If the supervisor's job grace deadline passes
first, it cancels the group: handlers are cancelled, and their jobs are *released*
(back to available, the attempt given back) in one shielded statement; then the
completer's pending outcomes are flushed. Nothing is left ``active``.

Delivery is at least once: a process killed between a handler's return and the write
of its outcome runs that job again once the lease expires.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
import trio

from daemon.queue import store
from daemon.queue.completer import Completer
from daemon.queue.due_scan import scan_for_due_jobs
from daemon.queue.fetcher import Fetcher
from daemon.queue.heartbeat import RunningJobs, renew_leases
from daemon.queue.listener import listen_for_jobs
from daemon.queue.metrics import QueueMetrics
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    from daemon.queue.jobs import Job
    from daemon.queue.registry import HandlerRegistry
    from daemon.shared.db.pool import Pool

log = logging.getLogger("triaged.queue")

_FLUSH_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    """How the worker talks to the queue tables."""

    lease_seconds: float = 30.0  # renewed every lease/3 while a handler runs
    poll_interval: float = 1.0  # look for due jobs this often without a NOTIFY
    listen: bool = True  # False: polling only (for poolers that drop LISTEN)
    conninfo: str | None = None  # for the LISTEN connection; required when listen is on


def worker_id() -> str:
    """``host:pid:random``, recorded on the jobs this process claims."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class QueueWorker:
    """The poller group: see the module docstring."""

    name = "poller"

    def __init__(
        self,
        pool: Pool,
        registry: HandlerRegistry,
        options: WorkerOptions,
        metrics: QueueMetrics | None = None,
    ) -> None:
        if options.listen and not options.conninfo:
            raise ValueError("listen=True needs the conninfo for the LISTEN connection")
        self.pool = pool
        self.options = options
        self.metrics = metrics or QueueMetrics()
        self.id = worker_id()
        self.running: RunningJobs = {}
        self.to_release: list[Job] = []
        self.completer = Completer(pool, self.metrics)
        self._fetchers = {r.queue: Fetcher(self, r) for r in registry}
        self._stop = trio.Event()

    def request_stop(self) -> None:
        self._stop.set()

    async def _heartbeat(self) -> None:
        await renew_leases(self.pool, self.running, self.options.lease_seconds)

    async def _listen(self) -> None:
        assert self.options.conninfo is not None
        await listen_for_jobs(self.options.conninfo, self.options.poll_interval, self._wake)

    def _wake(self, queue: str | None) -> None:
        """Wake the fetcher of ``queue`` (every fetcher for None)."""
        if queue is None:
            for fetcher in self._fetchers.values():
                fetcher.kick()
        elif (fetcher := self._fetchers.get(queue)) is not None:
            fetcher.kick()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as completer_nursery:
            completer_nursery.start_soon(self.completer.run)
            try:
                await self._run_fetchers_and_runners(task_status)
            finally:
                # Graceful: the completer writes the last outcomes and returns. Cancelled
                # (the drain deadline): it is cancelled too, and flush() below writes the rest.
                self.completer.close()
                with trio.CancelScope(shield=True) as wait:
                    wait.deadline = trio.current_time() + _FLUSH_TIMEOUT_SECONDS
                    await self.completer.done.wait()
                completer_nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True) as flush:
            flush.deadline = trio.current_time() + _FLUSH_TIMEOUT_SECONDS
            await self.completer.flush()

    async def _run_fetchers_and_runners(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as services:
            services.start_soon(self._heartbeat)
            if self.options.listen and self._fetchers:
                services.start_soon(self._listen)
            try:
                async with trio.open_nursery() as runners:
                    async with trio.open_nursery() as fetchers:
                        for fetcher in self._fetchers.values():
                            fetchers.start_soon(fetcher.run, runners)
                        if self._fetchers:  # stops with them: a drain claims nothing
                            fetchers.start_soon(
                                scan_for_due_jobs,
                                self.pool,
                                list(self._fetchers),
                                self.options.poll_interval,
                                self._wake,
                            )
                        log.info(
                            "worker %s serving queues: %s",
                            self.id,
                            ", ".join(self._fetchers) or "(none)",
                            extra={"action": "queue.worker_started", "worker": self.id},
                        )
                        task_status.started()
                        await self._stop.wait()
                        fetchers.cancel_scope.cancel()
                    if self.running:
                        log.info(
                            "waiting for %d running job(s)",
                            len(self.running),
                            extra={"action": "queue.draining"},
                        )
            finally:
                with trio.CancelScope(shield=True) as release:
                    release.deadline = trio.current_time() + _FLUSH_TIMEOUT_SECONDS
                    await self._release_cancelled()
            services.cancel_scope.cancel()

    async def _release_cancelled(self) -> None:
        jobs, self.to_release = self.to_release, []
        if not jobs:
            return
        try:
            async with self.pool.transaction() as conn:
                released = await store.release_jobs(conn, [(j.id, j.lease_token) for j in jobs])
        except (psycopg.Error, DatabaseError) as exc:
            log.error(
                "could not release %d job(s): %s; they return when their lease expires",
                len(jobs),
                exc,
                extra={"action": "queue.release_failed"},
            )
            return
        attempts = {j.id: j.attempt for j in jobs}
        for job_id, queue in released:
            self.metrics.finished.inc(queue, "released")
            log.info(
                "job %d released (shutdown); attempt %d given back",
                job_id,
                attempts[job_id],
                extra={
                    "action": "job.released",
                    "job_id": job_id,
                    "queue": queue,
                    "attempt": attempts[job_id],
                },
            )
