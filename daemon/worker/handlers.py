"""The composition of job handlers: which module function runs each queue.

Handlers are thin: they turn a job payload into a call of ``daemon/modules``. They use
the main pool, while the queue's own statements (claims, completions, lease renewals)
run on a small pool of their own (see the supervisor).

Ingestion: one queue per pipeline step (``ingest.fetch`` ... ``ingest.complete``), each
with its own concurrency (``TRIAGED_INGEST_CONCURRENCY``), and ``ingest.dead`` where a
step that ran out of attempts lands and fails its document. An analyzer that is
unavailable (server down, 429, circuit open) reschedules the job without spending an
attempt: documents wait for the model server, they do not fail for its absence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daemon.modules.ingestion import Pipeline, PipelineConfig
from daemon.modules.ingestion.states import DEAD_LETTER_QUEUE, STEPS, Step
from daemon.queue import HandlerRegistry, PermanentFailure, RetryLater
from daemon.shared.errors import AnalyzerUnavailable

if TYPE_CHECKING:
    from daemon.modules.analysis.factory import AnalyzerSet
    from daemon.queue import Handler, Job
    from daemon.shared.config import Settings
    from daemon.shared.db.pool import Pool


# An analyzer that is away: retry this soon when it says nothing of when to come back.
UNAVAILABLE_RETRY_SECONDS = 2.0
MAX_UNAVAILABLE_RETRY_SECONDS = 300.0


def build_registry(
    settings: Settings, pool: Pool, analyzers: AnalyzerSet | None = None
) -> HandlerRegistry:
    """Every queue this process serves, with its handler and per-process concurrency.

    ``analyzers`` are the process's (the supervisor builds them once, to report their
    health); without, the pipeline builds its own.
    """
    registry = HandlerRegistry(default_concurrency=settings.worker_concurrency)
    pipeline = Pipeline(pool, PipelineConfig.from_settings(settings, analyzers=analyzers))
    for step in STEPS:
        registry.register(
            step.queue,
            _step_handler(pipeline, step),
            concurrency=settings.ingest_concurrency.get(step.name),
        )
    registry.register(DEAD_LETTER_QUEUE, _dead_letter_handler(pipeline), concurrency=2)
    return registry


def _document_id(job: Job) -> int:
    document_id = job.payload.get("document_id")
    if not isinstance(document_id, int) or isinstance(document_id, bool):
        raise PermanentFailure(f"payload has no integer document_id: {job.payload!r}")
    return document_id


def _step_handler(pipeline: Pipeline, step: Step) -> Handler:
    async def handle(job: Job) -> dict[str, Any]:
        try:
            result = await pipeline.run_step(step, _document_id(job), job.payload)
        except AnalyzerUnavailable as exc:
            # The model server is away, rate-limits us, or the breaker is open: the job
            # waits (its attempt is given back) instead of failing the document.
            delay = UNAVAILABLE_RETRY_SECONDS if exc.retry_after is None else exc.retry_after
            delay = min(max(delay, 0.1), MAX_UNAVAILABLE_RETRY_SECONDS)
            raise RetryLater(delay, f"analyzer unavailable: {exc.message}") from None
        return result.as_json()

    handle.__qualname__ = f"ingest_{step.name}"
    return handle


def _dead_letter_handler(pipeline: Pipeline) -> Handler:
    async def handle(job: Job) -> dict[str, Any]:
        return (await pipeline.give_up(job.payload)).as_json()

    return handle
