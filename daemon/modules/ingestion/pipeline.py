"""The eight steps: what each job of the ingestion queues does to one document.

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
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
from psycopg.types.json import Jsonb

from daemon.modules.analysis import AnalysisRequest, Analyzer
from daemon.modules.analysis.factory import AnalyzerSet, build_taxonomy
from daemon.modules.cases import RoutingRules, decide, open_case, parse_routing_rules
from daemon.modules.ingestion.extraction import extract_text
from daemon.modules.ingestion.fetch import FetchPolicy, fetch_url
from daemon.modules.ingestion.normalize import normalize
from daemon.modules.ingestion.states import (
    DocumentState,
    Outcome,
    Step,
    next_step,
    step_of_queue,
    transition,
)
from daemon.queue import PermanentFailure, enqueue
from daemon.shared.cpu_threads import CpuThreads, usable_cpus
from daemon.shared.db.queries import load_queries
from daemon.shared.errors import AnalysisFailed, EmptyContent, IngestionError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.modules.analysis import Analysis, Taxonomy
    from daemon.shared.config import Settings
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

log = logging.getLogger("triaged.ingestion")

RAW_OUTPUT_KEPT = 20_000  # characters of an invalid model answer kept in the history

SQL = load_queries("daemon.modules.ingestion", "queries.sql")

# Hashing, extraction and normalization of big documents: off the event loop, at low
# priority, a few at a time.
_CPU = CpuThreads(usable_cpus(), name="ingest")


@attrs.frozen(kw_only=True)
class PipelineConfig:
    """Everything the steps need from the settings, built once."""

    analyzers: AnalyzerSet
    taxonomy: Taxonomy
    routing: RoutingRules
    fetch: FetchPolicy
    chunk_chars: int
    max_chunks: int
    max_attempts: int
    retention: timedelta

    @classmethod
    def from_settings(
        cls, settings: Settings, *, analyzers: AnalyzerSet | None = None
    ) -> PipelineConfig:
        """The pipeline's configuration; ``analyzers`` are the process's (built once by
        the composition root), else built here from the settings."""
        taxonomy = build_taxonomy(settings)
        routing = (
            RoutingRules()
            if settings.routing_rules is None
            else parse_routing_rules(settings.routing_rules, taxonomy=taxonomy)
        )
        return cls(
            analyzers=analyzers or AnalyzerSet(settings, taxonomy),
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
        )


@attrs.frozen(kw_only=True)
class StepResult:
    """What a step did: ``advanced`` to ``state``, ``skipped`` (not in its state any
    more), or ``failed`` with ``error``. Stored as the job's result."""

    outcome: str
    state: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}


SKIPPED = StepResult(outcome="skipped")


class Pipeline:
    """Runs the steps; one per worker process, shared by every step's handler."""

    def __init__(self, pool: Pool, config: PipelineConfig) -> None:
        self.pool = pool
        self.config = config
        self._work = {
            "fetch": self._fetch,
            "hash": self._hash,
            "extract": self._extract,
            "normalize": self._normalize,
            "route": self._route,
            "complete": self._complete,
        }

    async def run_step(
        self, step: Step, document_id: int, options: Mapping[str, Any] | None = None
    ) -> StepResult:
        """Run ``step`` for the document (see the module docstring). ``options`` come
        from the job: ``{"analyzer": {"provider": ..., "model": ...}}`` for a reanalysis
        with another analyzer.

        Raises:
            AnalyzerUnavailable: the analysis step could not reach its model server (or
                its circuit breaker is open): the caller reschedules the job, whose
                attempt does not count.
            AnalysisFailed: the model's output stayed invalid (with the raw output in
                the message): retried like any transient error, attempts counted.
        """
        try:
            if step.name == "analyze":
                return await self._analyze(step, document_id, dict(options or {}))
            return await self._work[step.name](step, document_id)
        except IngestionError as exc:
            return await self.fail(step, document_id, exc.message)
        except AnalysisFailed as exc:
            # A model's answers vary: another attempt (the queue's retry, with backoff)
            # may well be valid. The raw output goes to the document's history (not to
            # the job's error, which is logged: it is the document's content, in effect).
            await self._keep_invalid_output(step, document_id, exc)
            raise AnalysisFailed(
                f"{exc.message} (the model's raw output is in the document's history)",
                raw_output=exc.raw_output,
                errors=exc.errors,
            ) from None

    async def _read(self, query: str, document_id: int) -> tuple[Any, ...] | None:
        """One row of a step's input query (autocommit: no transaction to end)."""
        async with self.pool.connection() as conn:
            await conn.set_autocommit(True)
            return await (await conn.execute(SQL[query], {"id": document_id})).fetchone()

    async def _keep_invalid_output(self, step: Step, document_id: int, exc: AnalysisFailed) -> None:
        async with self.pool.transaction() as conn:
            await record_event(
                conn,
                document_id,
                step.from_state,
                step.from_state,
                step,
                {
                    "invalid_output": exc.raw_output[:RAW_OUTPUT_KEPT],
                    "errors": exc.errors[:20],
                },
            )

    async def fail(
        self,
        step: Step,
        document_id: int,
        error: str,
        detail: Mapping[str, Any] | None = None,
    ) -> StepResult:
        """Fail the document at ``step`` if it is still where the step found it; the
        reason (and ``detail``, e.g. a model's raw output) goes to its history."""
        async with self.pool.transaction() as conn:
            row = await (
                await conn.execute(
                    SQL["fail_step"],
                    {
                        "id": document_id,
                        "step": step.name,
                        "error": error[:2000],
                        "from_state": step.from_state.value,
                    },
                )
            ).fetchone()
            if row is None:
                return SKIPPED
            await record_event(
                conn,
                document_id,
                step.from_state,
                DocumentState.FAILED,
                step,
                {"error": error[:2000]},
            )
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

    # -- the steps ---------------------------------------------------------------------

    async def _advance(
        self,
        conn: TrioConnection,
        step: Step,
        document_id: int,
        *,
        to_state: DocumentState | None = None,
        detail: dict[str, Any] | None = None,
        needs_blob: bool = False,
    ) -> bool:
        """Move the document on inside the caller's transaction, record the transition
        and enqueue what follows; False (nothing written) when it is no longer in the
        step's state."""
        outcome = Outcome.DUPLICATE if to_state is DocumentState.DUPLICATE else Outcome.ADVANCED
        target = transition(step.from_state, step, outcome)  # the table decides
        row = await (
            await conn.execute(
                SQL["advance"],
                {
                    "id": document_id,
                    "from_state": step.from_state.value,
                    "to_state": target.value,
                    "step": step.name,
                    "detail": Jsonb(detail or {}),
                    "retention": self.config.retention.total_seconds(),
                    "needs_blob": needs_blob,
                },
            )
        ).fetchone()
        if row is None:
            return False
        following = next_step(step) if target is step.to_state else None
        if following is not None:
            # No dedup key: this runs once per document and step (the state guard above).
            await enqueue(
                conn,
                following.queue,
                {"document_id": document_id},
                max_attempts=self.config.max_attempts,
            )
        return True

    async def _fetch(self, step: Step, document_id: int) -> StepResult:
        # Content given at intake (the usual case): one transaction, no read first.
        async with self.pool.transaction() as conn:
            if await self._advance(conn, step, document_id, needs_blob=True):
                return StepResult(outcome="advanced", state=step.to_state.value)
        row = await self._read("step_input", document_id)
        if row is None or row[0] != step.from_state.value:
            return SKIPPED
        url = row[1]
        if url is None:
            raise IngestionError("the document has neither content nor a URL")
        fetched = await fetch_url(url, self.config.fetch)
        async with self.pool.transaction() as conn:
            if not await self._advance(
                conn,
                step,
                document_id,
                detail={
                    "url": fetched.final_url,
                    "status": fetched.status,
                    "bytes": len(fetched.data),
                },
            ):
                return SKIPPED
            await conn.execute(SQL["insert_blob"], {"id": document_id, "data": fetched.data})
            media_type = fetched.media_type
            if fetched.charset and media_type:
                media_type = f"{media_type}; charset={fetched.charset}"
            await conn.execute(
                SQL["set_fetched"],
                {"id": document_id, "media_type": media_type, "size": len(fetched.data)},
            )
        return StepResult(outcome="advanced", state=step.to_state.value)

    async def _blob_input(self, step: Step, document_id: int) -> _BlobInput | None:
        row = await self._read("blob_input", document_id)
        if row is None or row[0] != step.from_state.value:
            return None
        if row[3] is None:
            raise IngestionError("the document's content is missing")
        return _BlobInput(media_type=row[1], filename=row[2], data=bytes(row[3]))

    async def _hash(self, step: Step, document_id: int) -> StepResult:
        document = await self._blob_input(step, document_id)
        if document is None:
            return SKIPPED
        data = document.data
        if not data:  # all empty documents are alike; none is a duplicate of another
            raise EmptyContent("the document is empty (0 bytes)")
        digest = await _CPU.run(lambda: hashlib.sha256(data).digest())
        async with self.pool.transaction() as conn:
            original = await _claim_hash(conn, digest, document_id)
            target = step.to_state if original is None else DocumentState.DUPLICATE
            detail = {"sha256": digest.hex()} | ({"duplicate_of": original} if original else {})
            if not await self._advance(conn, step, document_id, to_state=target, detail=detail):
                return SKIPPED
            await conn.execute(
                SQL["set_hash"], {"id": document_id, "sha256": digest, "duplicate_of": original}
            )
        return StepResult(outcome="advanced", state=target.value)

    async def _extract(self, step: Step, document_id: int) -> StepResult:
        document = await self._blob_input(step, document_id)
        if document is None:
            return SKIPPED
        extracted = await _CPU.run(
            lambda: extract_text(document.data, document.media_type, filename=document.filename)
        )
        extraction = {
            "media_type": extracted.media_type,
            "charset": extracted.charset,
            "pages": extracted.pages,
            "truncated": extracted.truncated,
            "warnings": list(extracted.warnings),
        }
        async with self.pool.transaction() as conn:
            if not await self._advance(
                conn, step, document_id, detail={"chars": len(extracted.text)} | extraction
            ):
                return SKIPPED
            await conn.execute(
                SQL["set_extracted"],
                {"id": document_id, "text": extracted.text, "extraction": Jsonb(extraction)},
            )
        return StepResult(outcome="advanced", state=step.to_state.value)

    async def _normalize(self, step: Step, document_id: int) -> StepResult:
        row = await self._read("extracted_input", document_id)
        if row is None or row[0] != step.from_state.value:
            return SKIPPED
        if row[1] is None:
            raise IngestionError("the document's extracted text is missing")
        text = str(row[1])
        normalized = await _CPU.run(
            lambda: normalize(
                text, chunk_chars=self.config.chunk_chars, max_chunks=self.config.max_chunks
            )
        )
        async with self.pool.transaction() as conn:
            detail = {
                "chars": normalized.chars,
                "language": normalized.language,
                "chunks": len(normalized.chunks),
                "truncated": normalized.truncated,
            }
            if not await self._advance(conn, step, document_id, detail=detail):
                return SKIPPED
            await conn.execute(
                SQL["set_normalized"],
                {
                    "id": document_id,
                    "text": normalized.text,
                    "chunks": Jsonb(list(normalized.chunks)),
                    "truncated": normalized.truncated,
                    "language": normalized.language,
                },
            )
        return StepResult(outcome="advanced", state=step.to_state.value)

    def _analyzer_for(self, choice: object) -> Analyzer:
        """The analyzer a job asks for (none: the configured one).

        Raises:
            PermanentFailure: a malformed or impossible choice (retrying cannot help).
        """
        if choice is None:
            return self.config.analyzers.default
        if not isinstance(choice, dict) or not all(
            isinstance(choice.get(k), str | None) for k in ("provider", "model")
        ):
            raise PermanentFailure(f"invalid analyzer choice in the job: {choice!r}")
        try:
            return self.config.analyzers.get(choice.get("provider"), choice.get("model"))
        except ValueError as exc:
            raise PermanentFailure(f"analyzer choice: {exc}") from None

    async def _analyze(self, step: Step, document_id: int, options: dict[str, Any]) -> StepResult:
        analyzer = self._analyzer_for(options.get("analyzer"))
        row = await self._read("analysis_input", document_id)
        if row is None or row[0] != step.from_state.value:
            return SKIPPED
        _state, title, language, metadata, chunks, truncated = row
        if chunks is None:
            raise IngestionError("the document's normalized text is missing")
        result = await analyzer.analyze(
            AnalysisRequest(
                title=title or "",
                chunks=list(chunks),
                language=language,
                truncated=bool(truncated),
                metadata=dict(metadata or {}),
            )
        )
        analysis = result.analysis
        async with self.pool.transaction() as conn:
            detail = {
                "provider": result.provider,
                "category": analysis.category,
                "severity": analysis.severity.value,
            }
            if not await self._advance(conn, step, document_id, detail=detail):
                return SKIPPED
            await conn.execute(
                SQL["insert_analysis"],
                {
                    "id": document_id,
                    "category": analysis.category,
                    "severity": analysis.severity.value,
                    "summary": analysis.summary,
                    "entities": Jsonb([e.model_dump(mode="json") for e in analysis.entities]),
                    "confidence": analysis.confidence,
                    "rationale": analysis.rationale,
                    "provider": result.provider,
                    "model": result.model,
                    "version": result.version,
                    "latency_ms": result.latency_ms,
                    "calls": result.calls,
                    "repair_rounds": result.repair_rounds,
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                    "chunked": result.chunked,
                    "truncated": bool(truncated),
                },
            )
        return StepResult(outcome="advanced", state=step.to_state.value)

    async def _route(self, step: Step, document_id: int) -> StepResult:
        # Deciding is pure and quick: read, decide and write in one transaction.
        async with self.pool.transaction() as conn:
            row = await (await conn.execute(SQL["route_input"], {"id": document_id})).fetchone()
            if row is None or row[0] != step.from_state.value:
                return SKIPPED
            if row[1] is None:
                raise IngestionError("the document has no analysis to route")
            analysis = _analysis_from_row(row[1:], self.config.taxonomy)
            decision = decide(analysis, self.config.routing, datetime.now(UTC))
            detail: dict[str, Any] = {"open_case": decision.open_case, "reason": decision.reason}
            if not await self._advance(conn, step, document_id, detail=detail):
                return SKIPPED
            if decision.open_case:
                await open_case(conn, document_id, int(row[1]), decision)
        return StepResult(outcome="advanced", state=step.to_state.value)

    async def _complete(self, step: Step, document_id: int) -> StepResult:
        async with self.pool.transaction() as conn:  # advance sets completed_at, retain_until
            if not await self._advance(conn, step, document_id):
                return SKIPPED
        return StepResult(outcome="advanced", state=step.to_state.value)


@attrs.frozen(kw_only=True)
class _BlobInput:
    media_type: str | None
    filename: str | None
    data: bytes


async def _claim_hash(conn: TrioConnection, digest: bytes, document_id: int) -> int | None:
    """None if ``document_id`` is the first with this content (or takes over from a first
    one that failed: a re-upload of a document that failed must get its chance), else
    the original's id."""
    params: dict[str, Any] = {"sha256": digest, "id": document_id}
    while True:
        if await (await conn.execute(SQL["claim_hash"], params)).fetchone() is not None:
            return None
        row = await (await conn.execute(SQL["original_of_hash"], params)).fetchone()
        if row is None:  # the holder was deleted meanwhile: claim again
            continue
        holder, state = int(row[0]), row[1]
        if holder == document_id:
            return None
        if state != DocumentState.FAILED.value:
            return holder
        taken = await (
            await conn.execute(SQL["take_over_hash"], params | {"holder": holder})
        ).fetchone()
        if taken is not None:
            return None


def _analysis_from_row(row: tuple[Any, ...], taxonomy: Taxonomy) -> Analysis:
    from daemon.modules.analysis import parse_analysis

    _id, category, severity, summary, entities, confidence, rationale = row
    return parse_analysis(
        {
            "category": taxonomy.coerce_category(category),
            "severity": severity,
            "summary": summary,
            "entities": entities,
            "confidence": confidence,
            "rationale": rationale,
        },
        taxonomy=taxonomy,
    )


async def record_event(
    conn: TrioConnection,
    document_id: int,
    from_state: DocumentState | None,
    to_state: DocumentState,
    step: Step | None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        SQL["insert_event"],
        {
            "id": document_id,
            "from_state": None if from_state is None else from_state.value,
            "to_state": to_state.value,
            "step": None if step is None else step.name,
            "detail": Jsonb(detail or {}),
        },
    )
