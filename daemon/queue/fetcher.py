"""The fetcher: claims and starts the jobs of one queue, never more than its free slots.

It claims at most as many jobs as the queue has free slots, in one ``UPDATE … WHERE id IN
(SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING`` statement (shielded: a claim that
reached the server must reach us), and starts each claimed job at once: it never holds a
job it cannot start. For a batch handler it claims only while fewer than concurrency /
batch_size batches run, so that the jobs arriving meanwhile make the next batch (the
batches grow with the load, and an idle queue still starts a job at once). With nothing
(or less than asked) to claim, it sleeps until it is kicked: by a NOTIFY for its queue,
or by the due scan finding a job due (:mod:`daemon.queue.due_scan`). A failed claim backs
off (0.4 s doubling, at most 15 s).

Each claimed batch runs in a runner task (:meth:`Fetcher.run_batch`): registered as
running for the heartbeat, executed (:mod:`daemon.queue.executor`), its outcomes handed
to the completer. Cancelled (the drain deadline), its jobs are put on the poller's
release list.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import TYPE_CHECKING

import psycopg
import trio

from daemon.queue import store
from daemon.queue.executor import Batch, execute
from daemon.queue.heartbeat import Running
from daemon.queue.store import QueuePolicy
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    from daemon.queue.jobs import Job
    from daemon.queue.outcomes import Outcome
    from daemon.queue.poller import QueueWorker
    from daemon.queue.registry import Registration

log = logging.getLogger("triaged.queue")

POLICY_REFRESH_SECONDS = 5.0


class Fetcher:
    """Claims and starts jobs of one queue, never more than its free slots."""

    def __init__(self, worker: QueueWorker, registration: Registration) -> None:
        self.worker = worker
        self.registration = registration
        self.queue = registration.queue
        self.free = registration.concurrency
        # Batches in flight at most: for batch handlers, the jobs that come while they
        # run wait for the next batch (which is what makes batches under load); for
        # single-job handlers, a batch is a job, and only the concurrency counts.
        self.max_batches = math.ceil(registration.concurrency / registration.batch_size)
        self.batches = 0
        self.slot_freed = trio.Event()
        self.wakeup = trio.Event()
        self.policy = QueuePolicy()
        self._policy_loaded_at = -math.inf

    def kick(self) -> None:
        self.wakeup.set()

    async def run(self, runners: trio.Nursery) -> None:
        worker = self.worker
        failures = 0
        while True:
            while self.free == 0 or self.batches >= self.max_batches:
                self.slot_freed = trio.Event()
                await self.slot_freed.wait()
            self.wakeup = trio.Event()
            size = self.registration.batch_size
            wanted = min(self.free, size * (self.max_batches - self.batches))
            try:
                jobs = await self._claim(wanted)
                failures = 0
            except (psycopg.Error, DatabaseError) as exc:
                failures += 1
                delay = min(0.2 * 2**failures, worker.options.poll_interval * 5, 15.0)
                log.warning(
                    "claiming from %s failed: %s",
                    self.queue,
                    exc,
                    extra={"action": "queue.claim_failed", "queue": self.queue},
                )
                await trio.sleep(delay)
                continue
            for start in range(0, len(jobs), size):
                batch = jobs[start : start + size]
                self.free -= len(batch)
                self.batches += 1
                runners.start_soon(self.run_batch, Batch(batch))
            if len(jobs) < wanted:
                # Until kicked: a NOTIFY for this queue, or the due scan. A kick that
                # came during the claim is kept (the event was made before it).
                await self.wakeup.wait()
            else:
                await trio.lowlevel.checkpoint()

    async def _claim(self, limit: int) -> list[Job]:
        worker = self.worker
        now = trio.current_time()
        async with worker.pool.connection() as conn:
            if now - self._policy_loaded_at > POLICY_REFRESH_SECONDS:
                self.policy = await store.queue_policy(conn, self.queue)
                await conn.rollback()
                self._policy_loaded_at = now
            await conn.set_autocommit(self.policy.global_concurrency is None)
            # Shielded: a claim that reached the server must reach us, or its jobs would
            # sit leased by nobody until the lease expires.
            with trio.CancelScope(shield=True):
                jobs = await store.claim(
                    conn,
                    queue=self.queue,
                    limit=limit,
                    token=uuid.uuid4(),
                    lease_seconds=worker.options.lease_seconds,
                    worker=worker.id,
                    policy=self.policy,
                )
        if jobs:
            worker.metrics.claimed.inc(self.queue, amount=len(jobs))
        return jobs

    async def run_batch(self, batch: Batch) -> None:
        worker = self.worker
        metrics = worker.metrics
        for job in batch.jobs:
            worker.running[(job.id, job.lease_token)] = Running(job, batch)
            metrics.wait_seconds.observe(job.wait_seconds, job.queue)
            log.debug(
                "job %d started",
                job.id,
                extra={
                    "action": "job.started",
                    "job_id": job.id,
                    "queue": job.queue,
                    "attempt": job.attempt,
                },
            )
        started = time.monotonic()
        outcomes: list[Outcome] | None = None
        try:
            outcomes = await execute(self.registration, batch)
        except BaseException:
            # No outcome: the drain deadline cancelled the handler (a bare Cancelled, or a
            # group of them when the handler ran a nursery). The jobs go back to the
            # queue without spending their attempt (see QueueWorker).
            worker.to_release.extend(batch.jobs)
            raise
        finally:
            elapsed = time.monotonic() - started
            for job in batch.jobs:
                del worker.running[(job.id, job.lease_token)]
                metrics.run_seconds.observe(elapsed, job.queue)
            self.free += len(batch.jobs)
            self.batches -= 1
            self.slot_freed.set()
        if outcomes is None:
            for job in batch.jobs:
                metrics.finished.inc(job.queue, "lost")
                log.warning(
                    "job %d cancelled: its lease was lost",
                    job.id,
                    extra={
                        "action": "job.lease_lost",
                        "job_id": job.id,
                        "queue": job.queue,
                        "attempt": job.attempt,
                    },
                )
            return
        for outcome in outcomes:
            # A job whose lease alone was lost: its outcome is fenced out by its token.
            worker.completer.submit(outcome)
