"""The step runner: what each job of the ingestion queues does to its documents.

Contract of :meth:`Pipeline.run_step` (every step):

* **Idempotent.** The step reads the document; if it is no longer in the step's
  ``from_state`` (a redelivered job whose work is done, a retry racing an operator),
  it does nothing. Otherwise it computes off the event loop and outside any
  transaction, then in **one transaction** moves the document to the next state
  (``UPDATE ... WHERE state = from_state``: of two concurrent deliveries one wins, the
  other finds no row and rolls back), writes the step's results, records the
  transition in the document's history and enqueues the next step's job. A crash
  anywhere resumes at the interrupted step; no step completes twice.
* **Failures.** ``IngestionError`` (and anything else a step knows is permanent, such as
  a URL the SSRF policy refuses) fails the document at once, in its own transaction,
  with the step and the reason kept; the job itself completes. Other exceptions
  propagate: the queue retries with backoff, and when attempts run out it dead-letters
  the job to ``ingest.dead``, whose handler (:meth:`Pipeline.give_up`) fails the
  document with the last error.

The runner knows no step in particular: each is a
:class:`~daemon.modules.ingestion.steps.contract.StepWork` (one file each under
``steps/``), built here once with its own dependencies.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import psycopg
import trio

from daemon.modules.analysis import AnalysisFailed
from daemon.modules.ingestion.errors import IngestionError
from daemon.modules.ingestion.states import DocumentState, step_of_queue
from daemon.modules.ingestion.steps.analyze import AnalyzeStep
from daemon.modules.ingestion.steps.complete import CompleteStep
from daemon.modules.ingestion.steps.contract import (
    SKIPPED,
    Move,
    StepResult,
    StepWork,
    split,
)
from daemon.modules.ingestion.steps.extract import ExtractStep
from daemon.modules.ingestion.steps.fetch import FetchStep
from daemon.modules.ingestion.steps.hash import HashStep
from daemon.modules.ingestion.steps.normalize import NormalizeStep
from daemon.modules.ingestion.steps.route import RouteStep
from daemon.modules.ingestion.store import IngestionStore, advanced
from daemon.shared.errors import CpuWorkerLost

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.modules.ingestion.config import PipelineConfig
    from daemon.modules.ingestion.states import Step
    from daemon.modules.ingestion.steps.contract import Group, JobOptions
    from daemon.shared.db.pool import Pool

log = logging.getLogger("triaged.ingestion")

Results = dict[int, "StepResult | Exception"]  # document id -> what its step did
# Errors of a batch that may be one document's: the batch is run again one by one.
_ONE_DOCUMENTS_FAULT = (psycopg.DataError, psycopg.IntegrityError, CpuWorkerLost)


def build_steps(
    store: IngestionStore, config: PipelineConfig
) -> dict[str, StepWork[Any, Any, Any]]:
    """Every step's work by step name, each with its own dependencies."""
    steps: list[StepWork[Any, Any, Any]] = [
        FetchStep(store, config.fetch, trio.CapacityLimiter(config.fetch_concurrency)),
        HashStep(store, config.cpu),
        ExtractStep(store, config.processes),
        NormalizeStep(store, config.processes, config.chunk_chars, config.max_chunks),
        AnalyzeStep(store, config.analyzers),
        RouteStep(store, config.taxonomy, config.routing),
        CompleteStep(),
    ]
    return {work.step.name: work for work in steps}


class Pipeline:
    """Runs the steps; one per worker process, shared by every step's handler.

    A step runs for a batch of documents at once (:meth:`run_batch`): one read of the
    batch's input, the computing per document, then one transaction that moves every
    document of the batch on, writes the results, records the history and enqueues the
    next jobs. Each document keeps the single-document contract of the module
    docstring: of a batch, the documents no longer in the step's state are skipped and
    the others advance, each exactly once.
    """

    def __init__(self, pool: Pool, config: PipelineConfig) -> None:
        self.pool = pool
        self.config = config
        self.store = IngestionStore(pool, config.retention, config.max_attempts)
        self._steps = build_steps(self.store, config)

    async def run_step(
        self, step: Step, document_id: int, options: Mapping[str, Any] | None = None
    ) -> StepResult:
        """Run ``step`` for one document: :meth:`run_batch` of one, its exception raised.

        Raises:
            AnalyzerUnavailable, AnalysisFailed, PermanentFailure: see :meth:`run_batch`.
        """
        outcome = (await self.run_batch(step, {document_id: options or {}}))[document_id]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def run_batch(self, step: Step, documents: Mapping[int, JobOptions]) -> Results:
        """Run ``step`` for each document (id -> the job's options: ``{"analyzer":
        {"provider": ..., "model": ...}}`` for a reanalysis with another analyzer); for
        each, its :class:`StepResult` or the exception its job should end with:

        * ``AnalyzerUnavailable``: the model server could not be reached (or its
          circuit breaker is open): the caller reschedules the job, whose attempt does
          not count;
        * ``AnalysisFailed``: the model's output stayed invalid (the raw output is in
          the document's history): retried like any transient error, attempts counted;
        * ``PermanentFailure``: the job itself is malformed (an impossible analyzer).

        A document whose content cannot be ingested (``IngestionError``) is failed here
        and gets a ``failed`` result. A value the database refuses (``DataError``,
        ``IntegrityError``) makes the step run again one document at a time, so that
        only the document it belongs to gets that error. Any other error of the
        database raises: the whole batch is retried, which the steps' idempotency makes
        safe.
        """
        work = self._steps[step.name]
        results = await self._work_isolating(work, documents)
        for document_id, outcome in list(results.items()):
            try:
                results[document_id] = await self._settle(step, document_id, outcome)
            except Exception as exc:  # this document's outcome: the others are done
                results[document_id] = exc
        return results

    async def _work_isolating(
        self, work: StepWork[Any, Any, Any], documents: Mapping[int, JobOptions]
    ) -> Results:
        try:
            return await self._work_on(work, documents)
        except _ONE_DOCUMENTS_FAULT:
            if len(documents) == 1:
                raise
        results: Results = {}
        for document_id, options in documents.items():
            try:
                results.update(await self._work_on(work, {document_id: options}))
            except _ONE_DOCUMENTS_FAULT as exc:
                results[document_id] = exc
        return results

    async def _work_on(
        self, work: StepWork[Any, Any, Any], documents: Mapping[int, JobOptions]
    ) -> Results:
        """Read, then each group: compute, and decide, advance and write in one go."""
        read = await work.read(documents)
        results: Results = dict(read.settled)
        if read.concurrent:
            failed: list[Exception] = []

            async def run(group: Group[Any]) -> None:
                # A group of one document written apart: its error is that document's
                # outcome, not the batch's. A bigger group's error is the batch's, raised
                # once the others are done (not as an exception group of the nursery).
                try:
                    results.update(await self._run_group(work, group))
                except Exception as exc:
                    if len(group.inputs) == 1:
                        results.update(dict.fromkeys(group.inputs, exc))
                    else:
                        failed.append(exc)

            async with trio.open_nursery() as nursery:
                for group in read.groups:
                    nursery.start_soon(run, group)
            if failed:
                raise failed[0]
        else:
            for group in read.groups:
                results.update(await self._run_group(work, group))
        return results

    async def _run_group(self, work: StepWork[Any, Any, Any], group: Group[Any]) -> Results:
        outputs, results = split(await work.compute(group.inputs))
        if not outputs:
            return dict(results)
        async with self.store.writing(transaction=group.transaction) as conn:
            decided, settled = split(await work.decide(conn, outputs))
            results.update(settled)
            moves: dict[int, Move[Any]] = decided
            moved = await self.store.advance(
                conn, work.step, moves, writes=work.writes, new_analyses=work.new_analyses
            )
            if moved:
                await work.after(conn, {i: moves[i] for i in sorted(moved)})
        for document_id, move in moves.items():
            results[document_id] = advanced(move.to_state) if document_id in moved else SKIPPED
        return dict(results)

    async def _settle(
        self, step: Step, document_id: int, outcome: StepResult | Exception
    ) -> StepResult | Exception:
        """What a document's outcome becomes: an ``IngestionError`` fails it; the raw
        output of an invalid model answer goes to its history."""
        if isinstance(outcome, IngestionError):
            return await self.fail(step, document_id, outcome.message)
        if isinstance(outcome, AnalysisFailed):
            # A model's answers vary: another attempt (the queue's retry, with backoff)
            # may well be valid. The raw output goes to the document's history (not to
            # the job's error, which is logged: it is the document's content).
            await self.store.keep_invalid_output(
                step, document_id, outcome.raw_output, outcome.errors
            )
            return AnalysisFailed(
                f"{outcome.message} (the model's raw output is in the document's history)",
                raw_output=outcome.raw_output,
                errors=outcome.errors,
            )
        return outcome

    async def fail(self, step: Step, document_id: int, error: str) -> StepResult:
        """Fail the document at ``step`` if it is still where the step found it; the
        reason goes to its history. Idempotent: ``skipped`` when it was not there."""
        if not await self.store.fail(step, document_id, error):
            return SKIPPED
        log.warning(
            "document %d failed at %s: %s",
            document_id,
            step.name,
            error,
            extra={"action": "document.failed", "document_id": document_id, "step": step.name},
        )
        return StepResult(outcome="failed", state=DocumentState.FAILED.value, error=error)

    async def give_up(self, payload: dict[str, Any]) -> StepResult:
        """Handle a dead-lettered step job: the step ran out of attempts (or its worker
        died on the last one); the document fails with the last error."""
        step = step_of_queue(str(payload.get("queue", "")))
        inner = payload.get("payload") or {}
        document_id = inner.get("document_id")
        if step is None or not isinstance(document_id, int) or isinstance(document_id, bool):
            return SKIPPED
        attempts = payload.get("attempts")
        error = f"gave up after {attempts} attempt(s): {payload.get('error') or 'unknown error'}"
        return await self.fail(step, document_id, error)
