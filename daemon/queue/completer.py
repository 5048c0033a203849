"""The completer: writes job outcomes in batches, so a slot is never held waiting for a
commit.

Runners ``submit`` outcomes; ``run`` writes whatever has queued up meanwhile (up to
1,000) in one statement for completions, or one transaction when failures or snoozes are
among them (dead letters included). While the database is away it retries with backoff
and never drops an outcome; an outcome the database refuses is written alone and only it
is dropped (its lease expires and the job runs again). Every write is fenced by the
job's lease token: an outcome whose lease was lost is counted ``lost`` and logged.
Cancelled, ``run`` leaves its pending outcomes for :meth:`Completer.flush`.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import psycopg
import trio

from daemon.queue import store
from daemon.queue.outcomes import Completed, Failed, Outcome, Snoozed
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    import uuid

    from daemon.queue.jobs import Job
    from daemon.queue.metrics import QueueMetrics
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

log = logging.getLogger("triaged.queue")

MAX_BATCH = 1000


class Completer:
    """Writes outcomes in batches, retrying while the database is away."""

    def __init__(self, pool: Pool, metrics: QueueMetrics) -> None:
        self._pool = pool
        self._metrics = metrics
        self._send, self._receive = trio.open_memory_channel[Outcome](math.inf)
        self._pending: list[Outcome] = []  # taken from the channel, not yet written
        self.done = trio.Event()

    def submit(self, outcome: Outcome) -> None:
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

    def _take_ready(self) -> list[Outcome]:
        ready: list[Outcome] = []
        while len(ready) < MAX_BATCH:
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
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
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

    async def _write(self, batch: list[Outcome]) -> None:
        completed = [o for o in batch if isinstance(o, Completed)]
        others = [o for o in batch if not isinstance(o, Completed)]
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
        self, items: list[tuple[int, uuid.UUID, str | None]], others: list[Outcome]
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
    async def _write_other(conn: TrioConnection, outcome: Outcome) -> str | None:
        """The job's new state ('snoozed', 'retry' or 'failed'), None if fenced out."""
        if isinstance(outcome, Snoozed):
            ok = await store.snooze_job(
                conn, job_id=outcome.job.id, token=outcome.job.lease_token, delay=outcome.delay
            )
            return "snoozed" if ok else None
        assert isinstance(outcome, Failed)
        return await store.fail_job(
            conn,
            job_id=outcome.job.id,
            token=outcome.job.lease_token,
            error=outcome.error,
            delay=outcome.job.backoff.delay(outcome.job.attempt),
            permanent=outcome.permanent,
        )

    def _record(self, job: Job, state: str | None, outcome: Outcome) -> None:
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
            assert isinstance(outcome, Snoozed)
            log.info(
                "job %d snoozed for %.1fs",
                job.id,
                outcome.delay,
                extra={"action": "job.snoozed", **fields},
            )
        else:
            assert isinstance(outcome, Failed)
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
