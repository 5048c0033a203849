"""The worker: fetches jobs of registered queues and runs their handlers.

Design note
-----------
One ``QueueWorker`` per process (the supervisor's poller group) runs, in its nursery:

* one **fetcher** per registered queue. It claims at most as many jobs as the queue has
  free slots, in one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n)
  RETURNING`` statement, and starts each claimed job at once: it never holds a job it
  cannot start. For a batch handler it claims only while fewer than concurrency /
  batch_size batches run, so that the jobs arriving meanwhile make the next batch (the
  batches grow with the load, and an idle queue still starts a job at once). With
  nothing (or less than asked) to claim, it sleeps until a NOTIFY for its queue, a
  freed slot, or the poll interval;
* one **runner** task per claimed job, or per batch of jobs for a queue registered with
  a batch handler (``register_batch``): the handler runs under a cancel scope that the
  heartbeat cancels when the lease is lost (for a batch: the leases of all its jobs)
  and the job's timeout (a batch's earliest); the outcomes go to the completer;
* the **completer**, which writes outcomes in batches (all completions of a batch in
  one statement) so that a slot is never held waiting for a commit;
* the **heartbeat**, which renews the leases of all running jobs in one statement every
  third of the lease; a job whose lease is gone (rescued after a stall, or cancelled by
  an operator) has its handler cancelled and its outcome dropped;
* the **listener**, a LISTEN connection that wakes fetchers (unless ``listen`` is off,
  for poolers that drop LISTEN: then fetchers poll).

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
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
import trio

from daemon.queue import store
from daemon.queue.jobs import Job, PermanentFailure, RetryLater
from daemon.queue.metrics import QueueMetrics
from daemon.queue.store import NOTIFY_CHANNEL, QueuePolicy
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

log = logging.getLogger("triaged.queue")

Handler = Callable[[Job], Awaitable[Any]]
# Given 1..batch_size jobs claimed together; returns job id -> result, or -> an Exception
# instance meaning what that exception raised by a single-job handler would mean.
BatchHandler = Callable[[Sequence[Job]], Awaitable[Mapping[int, Any]]]

_FLUSH_TIMEOUT_SECONDS = 5.0
_POLICY_REFRESH_SECONDS = 5.0
_MAX_BATCH = 1000


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    """How the worker talks to the queue tables."""

    lease_seconds: float = 30.0  # renewed every lease/3 while a handler runs
    poll_interval: float = 1.0  # fetch at least this often without a NOTIFY
    listen: bool = True  # False: polling only (for poolers that drop LISTEN)
    conninfo: str | None = None  # for the LISTEN connection; required when listen is on


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
            return {job.id: _Returned(await handler(job))}

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

    def __iter__(self):  # noqa: ANN204 - an iterator of Registration
        return iter(self._registrations.values())

    def __len__(self) -> int:
        return len(self._registrations)


@dataclass(frozen=True)
class _Returned:
    """What a single-job handler returned: its result even if it is an exception."""

    value: Any


# -- outcomes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Completed:
    job: Job
    result: str | None  # JSON text, checked by store.encode_result


@dataclass(frozen=True)
class _Failed:
    job: Job
    error: str
    permanent: bool


@dataclass(frozen=True)
class _Snoozed:
    job: Job
    delay: float


_Outcome = _Completed | _Failed | _Snoozed


def worker_id() -> str:
    """``host:pid:random``, recorded on the jobs this process claims."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class _Completer:
    """Writes outcomes in batches, retrying while the database is away."""

    def __init__(self, pool: Pool, metrics: QueueMetrics) -> None:
        self._pool = pool
        self._metrics = metrics
        self._send, self._receive = trio.open_memory_channel[_Outcome](math.inf)
        self._pending: list[_Outcome] = []  # taken from the channel, not yet written
        self.done = trio.Event()

    def submit(self, outcome: _Outcome) -> None:
        self._send.send_nowait(outcome)

    def close(self) -> None:
        """No more outcomes will come: ``run`` returns once it has written the last."""
        self._send.close()

    async def run(self) -> None:
        try:
            async for first in self._receive:
                self._pending = [first, *self._take_ready()]
                await self._write_with_retry()
        finally:
            self.done.set()

    def _take_ready(self) -> list[_Outcome]:
        ready: list[_Outcome] = []
        while len(ready) < _MAX_BATCH:
            try:
                ready.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return ready

    async def flush(self) -> None:
        """Write what ``run`` left unwritten because it was cancelled (call shielded,
        after ``run`` ended)."""
        self._pending.extend(self._take_ready())
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            try:
                await self._write(batch)
            except (psycopg.Error, DatabaseError) as exc:
                log.error(
                    "could not record %d job outcome(s) at shutdown: %s; their leases "
                    "will expire and the jobs run again",
                    len(batch),
                    exc,
                    extra={"action": "queue.flush_failed"},
                )
                return

    async def _write_with_retry(self) -> None:
        """Write ``_pending``; while the database is away, retry with backoff (never drop).

        An error that retrying cannot fix (the database refuses a value) is one outcome's
        problem: the batch is then written one outcome at a time and only the refused one
        is dropped, with an error log (its lease expires and the job runs again).
        """
        delay = 0.1
        while self._pending:
            try:
                await self._write(self._pending)
                self._pending = []
            except (psycopg.OperationalError, psycopg.InterfaceError, DatabaseError) as exc:
                log.warning(
                    "recording %d job outcome(s) failed, retrying in %.1fs: %s",
                    len(self._pending),
                    delay,
                    exc,
                    extra={"action": "queue.complete_retry"},
                )
                await trio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except psycopg.Error:
                await self._write_one_by_one()

    async def _write_one_by_one(self) -> None:
        while self._pending:
            outcome = self._pending[0]
            try:
                await self._write([outcome])
            except (psycopg.OperationalError, psycopg.InterfaceError, DatabaseError):
                raise  # the database is away: the caller retries the rest
            except psycopg.Error as exc:
                log.error(
                    "the outcome of job %d cannot be recorded and is dropped: %s",
                    outcome.job.id,
                    exc,
                    extra={
                        "action": "job.outcome_refused",
                        "job_id": outcome.job.id,
                        "queue": outcome.job.queue,
                    },
                )
            self._pending.pop(0)

    async def _write(self, batch: list[_Outcome]) -> None:
        completed = [o for o in batch if isinstance(o, _Completed)]
        others = [o for o in batch if not isinstance(o, _Completed)]
        items = [(o.job.id, o.job.lease_token, o.result) for o in completed]
        dead: list[tuple[int, str]] = []
        if not others:
            # The common case: one autocommit statement, no BEGIN/COMMIT round trips.
            async with self._pool.connection() as conn:
                await conn.set_autocommit(True)
                kept = await store.complete_jobs(conn, items)
        else:
            kept, dead = await self._write_mixed(items, others)
        for outcome in completed:
            self._record(outcome.job, "completed" if outcome.job.id in kept else None, outcome)
        for dead_id, dead_queue in dead:
            log.info(
                "dead-lettered to %s as job %d",
                dead_queue,
                dead_id,
                extra={"action": "job.dead_lettered", "queue": dead_queue, "job_id": dead_id},
            )

    async def _write_mixed(
        self, items: list[tuple[int, uuid.UUID, str | None]], others: list[_Outcome]
    ) -> tuple[set[int], list[tuple[int, str]]]:
        """Completions, failures and snoozes in one transaction, dead letters included;
        each other outcome is recorded (logged, counted) once the transaction committed."""
        states: list[str | None] = []
        async with self._pool.transaction() as conn:
            kept = await store.complete_jobs(conn, items)
            for outcome in others:
                states.append(await self._write_other(conn, outcome))
            failed = zip(others, states, strict=True)
            failed_ids = [o.job.id for o, state in failed if state == "failed"]
            dead = await store.dead_letter(conn, failed_ids)
        for outcome, state in zip(others, states, strict=True):
            self._record(outcome.job, state, outcome)
        return kept, dead

    @staticmethod
    async def _write_other(conn: TrioConnection, outcome: _Outcome) -> str | None:
        """The job's new state ('snoozed', 'retry' or 'failed'), None if fenced out."""
        if isinstance(outcome, _Snoozed):
            ok = await store.snooze_job(
                conn, job_id=outcome.job.id, token=outcome.job.lease_token, delay=outcome.delay
            )
            return "snoozed" if ok else None
        assert isinstance(outcome, _Failed)
        return await store.fail_job(
            conn,
            job_id=outcome.job.id,
            token=outcome.job.lease_token,
            error=outcome.error,
            delay=outcome.job.backoff.delay(outcome.job.attempt),
            permanent=outcome.permanent,
        )

    def _record(self, job: Job, state: str | None, outcome: _Outcome) -> None:
        fields = {"job_id": job.id, "queue": job.queue, "attempt": job.attempt}
        if state is None:
            self._metrics.finished.inc(job.queue, "lost")
            log.warning(
                "outcome of job %d dropped: its lease was lost (rescued or cancelled)",
                job.id,
                extra={"action": "job.lease_lost", **fields},
            )
            return
        self._metrics.finished.inc(job.queue, state)
        if state == "completed":
            log.debug("job %d completed", job.id, extra={"action": "job.completed", **fields})
        elif state == "snoozed":
            assert isinstance(outcome, _Snoozed)
            log.info(
                "job %d snoozed for %.1fs",
                job.id,
                outcome.delay,
                extra={"action": "job.snoozed", **fields},
            )
        else:
            assert isinstance(outcome, _Failed)
            level = logging.WARNING if state == "retry" else logging.ERROR
            log.log(
                level,
                "job %d attempt %d failed (%s): %s",
                job.id,
                job.attempt,
                state,
                outcome.error,
                extra={"action": f"job.{state}", "error": outcome.error, **fields},
            )


@dataclass(eq=False)
class _Batch:
    """Jobs run by one handler call, under one cancel scope: cancelled once every one
    of its jobs has lost its lease (for a single job: when it has)."""

    jobs: Sequence[Job]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    lost: set[tuple[int, uuid.UUID]] = field(default_factory=set)

    def lose(self, job: Job) -> None:
        self.lost.add((job.id, job.lease_token))
        if len(self.lost) == len(self.jobs):
            self.scope.cancel()


@dataclass(eq=False)
class _Running:
    job: Job
    batch: _Batch
    renewed_at: float = field(default_factory=trio.current_time)  # lease last known held


class _Fetcher:
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
                runners.start_soon(self._run_batch, _Batch(batch))
            if len(jobs) < wanted:
                with trio.move_on_after(worker.options.poll_interval):
                    await self.wakeup.wait()
            else:
                await trio.lowlevel.checkpoint()

    async def _claim(self, limit: int) -> list[Job]:
        worker = self.worker
        now = trio.current_time()
        async with worker.pool.connection() as conn:
            if now - self._policy_loaded_at > _POLICY_REFRESH_SECONDS:
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

    async def _run_batch(self, batch: _Batch) -> None:
        worker = self.worker
        metrics = worker.metrics
        for job in batch.jobs:
            worker.running[(job.id, job.lease_token)] = _Running(job, batch)
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
        outcomes: list[_Outcome] | None = None
        try:
            outcomes = await self._execute(batch)
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

    async def _execute(self, batch: _Batch) -> list[_Outcome] | None:
        jobs = batch.jobs
        timeouts = [job.timeout for job in jobs if job.timeout]
        timeout = min(timeouts, default=math.inf)
        try:
            with batch.scope:
                with trio.move_on_after(timeout) as timeout_scope:
                    results = await self.registration.handler(jobs)
                if timeout_scope.cancelled_caught:
                    error = f"timed out after {timeout:g}s"
                    return [_Failed(job, error, permanent=False) for job in jobs]
                return [_outcome_of_result(job, results) for job in jobs]
            return None  # the heartbeat cancelled the batch: every lease was lost
        except Exception as exc:
            return [_outcome_of_error(job, exc) for job in jobs]


def _outcome_of_result(job: Job, results: Mapping[int, Any]) -> _Outcome:
    if job.id not in results:
        return _Failed(job, "the batch handler returned no outcome for this job", permanent=False)
    result = results[job.id]
    if isinstance(result, _Returned):  # a single-job handler's return value, whatever it is
        result = result.value
    elif isinstance(result, Exception):
        return _outcome_of_error(job, result)
    try:
        return _Completed(job, store.encode_result(result))
    except ValueError as exc:  # one job's bad result must not block the others
        return _Failed(job, str(exc), permanent=False)


def _outcome_of_error(job: Job, exc: Exception) -> _Outcome:
    """What a handler's exception means; one raised inside the handler's own nursery
    arrives wrapped in an ExceptionGroup and means the same as raised alone."""
    leaves = list(_leaves(exc))
    permanent = [e for e in leaves if isinstance(e, PermanentFailure)]
    if permanent:
        return _Failed(job, f"permanent failure: {permanent[0]}", permanent=True)
    if leaves and all(isinstance(e, RetryLater) for e in leaves):
        return _Snoozed(job, max(e.delay for e in leaves if isinstance(e, RetryLater)))
    first = leaves[0] if len(leaves) == 1 else exc
    return _Failed(job, f"{type(first).__name__}: {first}", permanent=False)


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


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
        # Keyed by (id, lease token): a hung attempt and its rescued retry may both be here.
        self.running: dict[tuple[int, uuid.UUID], _Running] = {}
        self.to_release: list[Job] = []
        self.completer = _Completer(pool, self.metrics)
        self._fetchers = {r.queue: _Fetcher(self, r) for r in registry}
        self._stop = trio.Event()

    def request_stop(self) -> None:
        self._stop.set()

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

    async def _heartbeat(self) -> None:
        interval = self.options.lease_seconds / 3
        while True:
            await trio.sleep(interval)
            running = list(self.running.values())
            if not running:
                continue
            try:
                async with self.pool.transaction() as conn:
                    held = await store.renew_leases(
                        conn,
                        [(r.job.id, r.job.lease_token) for r in running],
                        self.options.lease_seconds,
                    )
            except (psycopg.Error, DatabaseError) as exc:
                log.warning(
                    "renewing %d lease(s) failed: %s",
                    len(running),
                    exc,
                    extra={"action": "queue.heartbeat_failed"},
                )
                self._give_up_stale_leases(running)
                continue
            now = trio.current_time()
            for entry in running:
                if (entry.job.id, entry.job.lease_token) in held:
                    entry.renewed_at = now
                else:
                    entry.batch.lose(entry.job)

    def _give_up_stale_leases(self, running: list[_Running]) -> None:
        """Cancel handlers whose lease may have expired while renewals failed.

        Another process may rescue such a job and run it; this one must not run on beside
        it. Cancelled a little before the lease can expire (renewals every third of it).
        """
        limit = self.options.lease_seconds * 0.8
        now = trio.current_time()
        for entry in running:
            key = (entry.job.id, entry.job.lease_token)
            if now - entry.renewed_at >= limit and key not in entry.batch.lost:
                log.warning(
                    "job %d cancelled: its lease could not be renewed for %.1fs",
                    entry.job.id,
                    now - entry.renewed_at,
                    extra={
                        "action": "job.lease_lost",
                        "job_id": entry.job.id,
                        "queue": entry.job.queue,
                        "attempt": entry.job.attempt,
                    },
                )
                entry.batch.lose(entry.job)

    async def _listen(self) -> None:
        from daemon.shared.db.psycopg_trio import TrioConnection

        assert self.options.conninfo is not None
        delay = 0.5
        while True:
            try:
                conn = await TrioConnection.connect(self.options.conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    delay = 0.5
                    for fetcher in self._fetchers.values():
                        fetcher.kick()  # notifications may have been missed while away
                    async for notification in conn.notifies():
                        fetcher = self._fetchers.get(notification.payload)
                        if fetcher is not None:
                            fetcher.kick()
            except psycopg.Error as exc:
                log.warning(
                    "LISTEN connection lost (%s); polling every %.1fs until it is back",
                    type(exc).__name__,
                    self.options.poll_interval,
                    extra={"action": "queue.listen_lost"},
                )
            await trio.sleep(delay)
            delay = min(delay * 2, 30.0)
