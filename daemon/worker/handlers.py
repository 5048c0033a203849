"""The composition of job handlers: which module function runs each queue.

Handlers are thin: they turn a job payload into a call of ``daemon/modules``. They use
the main pool, while the queue's own statements (claims, completions, lease renewals)
run on a small pool of their own (see the supervisor).

Ingestion: one queue per pipeline step (``ingest.fetch`` ... ``ingest.complete``), each
with its own concurrency (``TRIAGED_INGEST_CONCURRENCY``), whose jobs claimed together
run as one batch (up to ``TRIAGED_INGEST_BATCH_SIZE``: one transaction for all their
documents); and ``ingest.dead``, where a step that ran out of attempts lands and fails
its document. An analyzer that is
unavailable (server down, 429, circuit open) reschedules the job without spending an
attempt: documents wait for the model server, they do not fail for its absence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daemon.composition import pipeline_config
from daemon.modules.analysis import AnalyzerUnavailable, Provider
from daemon.modules.ingestion import DEAD_LETTER_QUEUE, STEPS, Pipeline
from daemon.queue import HandlerRegistry, PermanentFailure, RetryLater

if TYPE_CHECKING:
    from collections.abc import Sequence

    from daemon.composition import Components
    from daemon.modules.analysis import AnalyzerSet
    from daemon.modules.ingestion import Step
    from daemon.queue import BatchHandler, Handler, Job
    from daemon.shared.db.pool import Pool


# An analyzer that is away: retry this soon when it says nothing of when to come back.
UNAVAILABLE_RETRY_SECONDS = 2.0
MAX_UNAVAILABLE_RETRY_SECONDS = 300.0


def build_registry(
    components: Components, pool: Pool, analyzers: AnalyzerSet | None = None
) -> HandlerRegistry:
    """Every queue of the pipeline, with its handler and per-process concurrency.

    ``analyzers`` are the process's (the supervisor builds them once, to report their
    health); without, the pipeline builds its own from the components.
    """
    settings = components.settings
    registry = HandlerRegistry(default_concurrency=settings.worker_concurrency)
    pipeline = Pipeline(pool, pipeline_config(components, analyzers))
    for step in STEPS:
        batch_size = _batch_size(components, step)
        # Unless configured: two batches in flight (one computes while the other
        # writes, and the jobs arriving meanwhile make the next); documents alone: as
        # many as any queue.
        default = 2 * batch_size if batch_size > 1 else settings.worker_concurrency
        registry.register_batch(
            step.queue,
            _step_handler(pipeline, step),
            batch_size=batch_size,
            concurrency=settings.ingest_concurrency.get(step.name, default),
        )
    registry.register(DEAD_LETTER_QUEUE, _dead_letter_handler(pipeline), concurrency=2)
    return registry


def _batch_size(components: Components, step: Step) -> int:
    """Documents of a step run together. A model server's analysis runs each document
    alone: a call takes seconds, and a batch would wait for its slowest before any of
    its documents moved on (batching pays where the database work dominates)."""
    if step.name == "analyze" and components.analysis.provider is not Provider.HEURISTIC:
        return 1
    return components.settings.ingest_batch_size


def _document_id(job: Job) -> int:
    document_id = job.payload.get("document_id")
    if not isinstance(document_id, int) or isinstance(document_id, bool):
        raise PermanentFailure(f"payload has no integer document_id: {job.payload!r}")
    return document_id


def _step_handler(pipeline: Pipeline, step: Step) -> BatchHandler:
    async def handle(jobs: Sequence[Job]) -> dict[int, Any]:
        outcomes: dict[int, Any] = {}
        job_of: dict[int, Job] = {}  # document id -> its job in this batch
        twins: list[tuple[Job, int]] = []  # more jobs for one document: they share its outcome
        for job in jobs:
            try:
                document_id = _document_id(job)
            except PermanentFailure as exc:
                outcomes[job.id] = exc
                continue
            if document_id in job_of:
                twins.append((job, document_id))
                continue
            job_of[document_id] = job
        results = await pipeline.run_batch(
            step, {document_id: job.payload for document_id, job in job_of.items()}
        )
        for document_id, job in job_of.items():
            result = results[document_id]
            if isinstance(result, AnalyzerUnavailable):
                # The model server is away, rate-limits us, or the breaker is open: the
                # job waits (its attempt is given back) instead of failing the document.
                delay = result.retry_after
                delay = UNAVAILABLE_RETRY_SECONDS if delay is None else delay
                delay = min(max(delay, 0.1), MAX_UNAVAILABLE_RETRY_SECONDS)
                outcomes[job.id] = RetryLater(delay, f"analyzer unavailable: {result.message}")
            elif isinstance(result, Exception):
                outcomes[job.id] = result
            else:
                outcomes[job.id] = result.as_json()
        for job, document_id in twins:  # the step ran once for the document
            outcomes[job.id] = outcomes[job_of[document_id].id]
        return outcomes

    handle.__qualname__ = f"ingest_{step.name}"
    return handle


def _dead_letter_handler(pipeline: Pipeline) -> Handler:
    async def handle(job: Job) -> dict[str, Any]:
        return (await pipeline.give_up(job.payload)).as_json()

    return handle
