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

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from daemon.modules.analysis.factory import AnalyzerSet, build_taxonomy
from daemon.modules.cases import RoutingRules, parse_routing_rules
from daemon.modules.ingestion import FetchPolicy, Pipeline, PipelineConfig
from daemon.modules.ingestion.states import DEAD_LETTER_QUEUE, STEPS, Step
from daemon.queue import HandlerRegistry, PermanentFailure, RetryLater
from daemon.shared.config import AnalyzerName
from daemon.shared.cpu_threads import CpuThreads, usable_cpus
from daemon.shared.errors import AnalyzerUnavailable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from daemon.queue import BatchHandler, Handler, Job
    from daemon.shared.config import Settings
    from daemon.shared.db.pool import Pool


# An analyzer that is away: retry this soon when it says nothing of when to come back.
UNAVAILABLE_RETRY_SECONDS = 2.0
MAX_UNAVAILABLE_RETRY_SECONDS = 300.0


def pipeline_config(
    settings: Settings, *, analyzers: AnalyzerSet | None, cpu: CpuThreads
) -> PipelineConfig:
    """The pipeline's configuration from the settings (taxonomy and routing rules parsed
    here); ``analyzers`` are the process's (built once by the supervisor), else built
    here; ``cpu``: the process's CPU threads.

    Raises:
        ValueError: malformed routing rules or taxonomy (see their parsers).
    """
    taxonomy = build_taxonomy(settings)
    routing = (
        RoutingRules()
        if settings.routing_rules is None
        else parse_routing_rules(settings.routing_rules, taxonomy=taxonomy)
    )
    return PipelineConfig(
        analyzers=analyzers or AnalyzerSet(settings, taxonomy),
        cpu=cpu,
        taxonomy=taxonomy,
        routing=routing,
        fetch=FetchPolicy(
            connect_timeout=settings.fetch_connect_timeout_seconds,
            total_timeout=settings.fetch_timeout_seconds,
            max_bytes=settings.max_document_bytes,
            max_redirects=settings.fetch_max_redirects,
            allow_private=settings.fetch_allow_private,
            allowed_networks=settings.fetch_allowed_networks,
        ),
        chunk_chars=settings.analyzer_chunk_chars,
        max_chunks=settings.analyzer_max_chunks,
        max_attempts=settings.ingest_max_attempts,
        retention=timedelta(days=settings.document_retention_days),
        fetch_concurrency=settings.worker_concurrency,
    )


def build_registry(
    settings: Settings,
    pool: Pool,
    analyzers: AnalyzerSet | None = None,
    *,
    cpu: CpuThreads | None = None,
) -> HandlerRegistry:
    """Every queue this process serves, with its handler and per-process concurrency.

    ``analyzers`` are the process's (the supervisor builds them once, to report their
    health); without, the pipeline builds its own. ``cpu``: the process's CPU threads
    (hashing, extraction, normalization); without, the registry makes its own, sized to
    the CPUs usable.
    """
    registry = HandlerRegistry(default_concurrency=settings.worker_concurrency)
    cpu = cpu or CpuThreads(usable_cpus(), name="ingest")
    pipeline = Pipeline(pool, pipeline_config(settings, analyzers=analyzers, cpu=cpu))
    for step in STEPS:
        batch_size = _batch_size(settings, step)
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


def _batch_size(settings: Settings, step: Step) -> int:
    """Documents of a step run together. A model server's analysis runs each document
    alone: a call takes seconds, and a batch would wait for its slowest before any of
    its documents moved on (batching pays where the database work dominates)."""
    if step.name == "analyze" and settings.analyzer is not AnalyzerName.HEURISTIC:
        return 1
    return settings.ingest_batch_size


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
