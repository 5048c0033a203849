"""The composition of job handlers: which module function runs each queue.

Handlers are thin: they turn a job payload into a call of ``daemon/modules``. They use
the main pool, while the queue's own statements (claims, completions, lease renewals)
run on a small pool of their own (see the supervisor).

Ingestion: one queue per pipeline step (``ingest.fetch`` ... ``ingest.complete``), each
with its own concurrency (``TRIAGED_INGEST_CONCURRENCY``), and ``ingest.dead`` where a
step that ran out of attempts lands and fails its document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daemon.modules.ingestion import Pipeline, PipelineConfig
from daemon.modules.ingestion.states import DEAD_LETTER_QUEUE, STEPS, Step
from daemon.queue import HandlerRegistry, PermanentFailure

if TYPE_CHECKING:
    from daemon.queue import Handler, Job
    from daemon.shared.config import Settings
    from daemon.shared.db.pool import Pool


def build_registry(settings: Settings, pool: Pool) -> HandlerRegistry:
    """Every queue this process serves, with its handler and per-process concurrency."""
    registry = HandlerRegistry(default_concurrency=settings.worker_concurrency)
    pipeline = Pipeline(pool, PipelineConfig.from_settings(settings))
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
        result = await pipeline.run_step(step, _document_id(job))
        return result.as_json()

    handle.__qualname__ = f"ingest_{step.name}"
    return handle


def _dead_letter_handler(pipeline: Pipeline) -> Handler:
    async def handle(job: Job) -> dict[str, Any]:
        return (await pipeline.give_up(job.payload)).as_json()

    return handle
