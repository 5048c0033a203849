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

import contextlib
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, LiteralString, cast

import attrs
import psycopg
import trio
from psycopg.types.json import Jsonb

from daemon.modules.analysis import AnalysisOutcome, AnalysisRequest, Analyzer
from daemon.modules.analysis.factory import AnalyzerSet
from daemon.modules.cases import RoutingRules, decide, open_cases
from daemon.modules.ingestion.extraction import Extracted, extract_text
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
from daemon.queue import PermanentFailure
from daemon.shared.cpu_threads import CpuThreads, usable_cpus
from daemon.shared.db.queries import load_queries
from daemon.shared.errors import AnalysisFailed, EmptyContent, IngestionError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from daemon.modules.analysis import Analysis, Taxonomy
    from daemon.modules.cases.routing import RoutingDecision
    from daemon.shared.config import Settings
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

log = logging.getLogger("triaged.ingestion")

RAW_OUTPUT_KEPT = 20_000  # characters of an invalid model answer kept in the history
BLOB_GROUP_BYTES = 64 << 20  # contents the hash and extract steps hold at once

SQL = load_queries("daemon.modules.ingestion", "queries.sql")

# The advance statement, alone (None) and with each step's own writes in it.
_WRITES_MARKER = "-- step writes --"
assert _WRITES_MARKER in SQL["advance"]
_ADVANCE: dict[str | None, LiteralString] = {
    None: SQL["advance"],
    **{
        name: cast("LiteralString", SQL["advance"].replace(_WRITES_MARKER, SQL[name]))
        for name in ("write_extracted", "write_normalized", "write_analyses")
    },
}

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
    fetch_concurrency: int = 10  # URL downloads at once in the process

    @classmethod
    def from_settings(
        cls, settings: Settings, *, analyzers: AnalyzerSet | None = None
    ) -> PipelineConfig:
        """The pipeline's configuration; ``analyzers`` are the process's (built once by
        the composition root), else built here from the settings."""
        from daemon.composition import compose  # TEMPORARY until the pipeline split lands

        components = compose(settings)
        taxonomy = components.taxonomy
        routing = components.routing
        return cls(
            analyzers=analyzers or AnalyzerSet(components.analysis),
            taxonomy=taxonomy,
            routing=routing,
            fetch=FetchPolicy(
                connect_timeout=settings.fetch_connect_timeout_seconds,
                total_timeout=settings.fetch_timeout_seconds,
                max_bytes=settings.max_document_bytes,
                max_redirects=settings.fetch_max_redirects,
                allow_private=settings.fetch_allow_private,
                allowed_networks=settings.fetch_allowed_networks,
                egress=settings.fetch_egress_networks,
            ),
            chunk_chars=settings.analyzer_chunk_chars,
            max_chunks=settings.analyzer_max_chunks,
            max_attempts=settings.ingest_max_attempts,
            retention=timedelta(days=settings.document_retention_days),
            fetch_concurrency=settings.worker_concurrency,
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


Results = dict[int, "StepResult | Exception"]  # document id -> what its step did


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
        # A batch's URLs are fetched concurrently, but never more than this many at
        # once in the process (each may hold up to max_document_bytes).
        self._downloads = trio.CapacityLimiter(config.fetch_concurrency)
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
        """Run ``step`` for one document: :meth:`run_batch` of one, its exception raised.

        Raises:
            AnalyzerUnavailable, AnalysisFailed, PermanentFailure: see :meth:`run_batch`.
        """
        outcome = (await self.run_batch(step, {document_id: options or {}}))[document_id]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def run_batch(self, step: Step, documents: Mapping[int, Mapping[str, Any]]) -> Results:
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
        results = await self._work_isolating(step, documents)
        for document_id, outcome in list(results.items()):
            try:
                results[document_id] = await self._settle(step, document_id, outcome)
            except Exception as exc:  # this document's outcome: the others are done
                results[document_id] = exc
        return results

    async def _work_isolating(
        self, step: Step, documents: Mapping[int, Mapping[str, Any]]
    ) -> Results:
        try:
            return await self._work_on(step, documents)
        except (psycopg.DataError, psycopg.IntegrityError):
            if len(documents) == 1:
                raise
        results: Results = {}
        for document_id, options in documents.items():
            try:
                results.update(await self._work_on(step, {document_id: options}))
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                results[document_id] = exc
        return results

    async def _work_on(self, step: Step, documents: Mapping[int, Mapping[str, Any]]) -> Results:
        results: Results = {}
        if step.name == "analyze":
            await self._analyze(step, documents, results)
        else:
            await self._work[step.name](step, list(documents), results)
        return results

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
            await self._keep_invalid_output(step, document_id, outcome)
            return AnalysisFailed(
                f"{outcome.message} (the model's raw output is in the document's history)",
                raw_output=outcome.raw_output,
                errors=outcome.errors,
            )
        return outcome

    async def _read(self, query: str, document_ids: list[int]) -> dict[int, tuple[Any, ...]]:
        """A step's input rows by document id (autocommit: no transaction to end); the
        first column of each query is the document's id, and is not in the tuple."""
        async with self._autocommit() as conn:
            rows = await (await conn.execute(SQL[query], {"ids": document_ids})).fetchall()
        return {int(row[0]): tuple(row[1:]) for row in rows}

    async def _read_inputs(
        self, step: Step, query: str, ids: list[int], results: Results, *, needs: int, error: str
    ) -> dict[int, tuple[Any, ...]]:
        """The input rows (the state first) of the documents still in the step's state
        whose column ``needs`` is there; the others get ``skipped``, or an
        ``IngestionError(error)`` (their input is missing: a failed document)."""
        return _in_state(step, ids, await self._read(query, ids), results, needs, error)

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
        moves: Mapping[int, tuple[DocumentState, dict[str, Any]]],
        results: Results,
        *,
        needs_blob: bool = False,
        writes: str | None = None,
        data: list[dict[str, Any]] | None = None,
        columns: Mapping[int, dict[str, Any]] | None = None,
        new_analyses: bool = False,
    ) -> set[int]:
        """Move documents on (document id -> the state the step reached, its detail for
        the history), record the transitions and enqueue what follows, in one statement:
        atomic even on an autocommit connection, in the caller's transaction otherwise.
        ``writes`` names a step's own CTEs to run in that statement, on ``data`` (its
        rows, for the documents moved); ``columns`` are a document's new language,
        category or severity; ``new_analyses`` draws each document's new analysis id.
        The ids moved: a document no longer in the step's state is not (and gets
        ``skipped`` in ``results``); the others get ``advanced``."""
        if not moves:
            return set()
        ids = sorted(moves)  # one lock order for every batch
        targets = [transition(step.from_state, step, _outcome_of(moves[i][0])) for i in ids]
        following = next_step(step)
        rows = await (
            await conn.execute(
                _ADVANCE[writes],
                {
                    "ids": ids,
                    "rows": Jsonb(
                        [
                            {"id": i, "to_state": target.value, "detail": moves[i][1]}
                            | (columns or {}).get(i, {})
                            for i, target in zip(ids, targets, strict=True)
                        ]
                    ),
                    "new_analyses": new_analyses,
                    "from_state": step.from_state.value,
                    "step": step.name,
                    "retention": self.config.retention.total_seconds(),
                    "needs_blob": needs_blob,
                    # The next jobs (no dedup key: the state guard makes this run once
                    # per document and step), for the documents that reached to_state.
                    "next_queue": None if following is None else following.queue,
                    "onward_state": step.to_state.value,
                    "max_attempts": self.config.max_attempts,
                    "data": None if data is None else Jsonb(data),
                },
            )
        ).fetchall()
        moved = {int(row[0]) for row in rows}
        for document_id, target in zip(ids, targets, strict=True):
            if document_id not in moved:
                results[document_id] = SKIPPED
            else:
                results[document_id] = StepResult(outcome="advanced", state=target.value)
        return moved

    @contextlib.asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[TrioConnection]:
        """A connection for a step whose writes are one statement (no BEGIN/COMMIT)."""
        async with self.pool.connection() as conn:
            await conn.set_autocommit(True)
            yield conn

    async def _fetch(self, step: Step, ids: list[int], results: Results) -> None:
        # Content given at intake (the usual case): one transaction, no read first.
        advanced = {document_id: (step.to_state, {}) for document_id in ids}
        async with self._autocommit() as conn:
            moved = await self._advance(conn, step, advanced, results, needs_blob=True)
        rest = [document_id for document_id in ids if document_id not in moved]
        if not rest:
            return
        inputs = await self._read_inputs(
            step,
            "step_input",
            rest,
            results,
            needs=1,
            error="the document has neither content nor a URL",
        )
        to_fetch = {document_id: str(row[1]) for document_id, row in inputs.items()}

        async def fetch_one(document_id: int, url: str) -> None:
            try:
                async with self._downloads:
                    results[document_id] = await self._fetch_url(step, document_id, url)
            except Exception as exc:  # this document's outcome, not the batch's
                results[document_id] = exc

        async with trio.open_nursery() as nursery:
            for document_id, url in to_fetch.items():
                nursery.start_soon(fetch_one, document_id, url)

    async def _fetch_url(self, step: Step, document_id: int, url: str) -> StepResult:
        fetched = await fetch_url(url, self.config.fetch)
        detail = {"url": fetched.final_url, "status": fetched.status, "bytes": len(fetched.data)}
        results: Results = {}
        async with self.pool.transaction() as conn:
            moved = await self._advance(conn, step, {document_id: (step.to_state, detail)}, results)
            if not moved:
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

    async def _blob_inputs(
        self, step: Step, ids: list[int], results: Results
    ) -> dict[int, _BlobInput]:
        """The stored content of the documents still in the step's state; the others
        get their result."""
        rows = await self._read_inputs(
            step, "blob_input", ids, results, needs=3, error="the document's content is missing"
        )
        return {
            document_id: _BlobInput(media_type=row[1], filename=row[2], data=bytes(row[3]))
            for document_id, row in rows.items()
        }

    async def _by_size(self, ids: list[int]) -> list[list[int]]:
        """``ids`` in groups whose contents together stay within ``BLOB_GROUP_BYTES``
        (a document bigger than that is a group alone): the steps that read contents
        hold one group's in memory at a time."""
        sizes = await self._read("sizes", ids)
        groups: list[list[int]] = [[]]
        total = 0
        for document_id in ids:
            size = int((sizes.get(document_id) or (0,))[0] or 0)
            if groups[-1] and total + size > BLOB_GROUP_BYTES:
                groups.append([])
                total = 0
            groups[-1].append(document_id)
            total += size
        return groups

    async def _hash(self, step: Step, ids: list[int], results: Results) -> None:
        for group in await self._by_size(ids):
            await self._hash_group(step, group, results)

    async def _hash_group(self, step: Step, ids: list[int], results: Results) -> None:
        documents = await self._blob_inputs(step, ids, results)
        for document_id, document in list(documents.items()):
            if not document.data:  # all empty documents are alike; none duplicates another
                results[document_id] = EmptyContent("the document is empty (0 bytes)")
                del documents[document_id]
        if not documents:
            return
        datas = [(document_id, document.data) for document_id, document in documents.items()]
        digests = dict(
            await _CPU.run(lambda: [(i, hashlib.sha256(data).digest()) for i, data in datas])
        )
        async with self.pool.transaction() as conn:
            originals = await _claim_hashes(conn, digests)
            moves: dict[int, tuple[DocumentState, dict[str, Any]]] = {}
            for document_id, digest in digests.items():
                original = originals.get(document_id)
                detail: dict[str, Any] = {"sha256": digest.hex()}
                if original is None:
                    moves[document_id] = (step.to_state, detail)
                else:
                    moves[document_id] = (
                        DocumentState.DUPLICATE,
                        detail | {"duplicate_of": original},
                    )
            moved = await self._advance(conn, step, moves, results)
            if moved:
                ordered = sorted(moved)
                await conn.execute(
                    SQL["set_hashes"],
                    {
                        "ids": ordered,
                        "sha256s": [digests[i] for i in ordered],
                        "duplicates_of": [originals.get(i) for i in ordered],
                    },
                )

    async def _extract(self, step: Step, ids: list[int], results: Results) -> None:
        for group in await self._by_size(ids):
            await self._extract_group(step, group, results)

    async def _extract_group(self, step: Step, ids: list[int], results: Results) -> None:
        documents = await self._blob_inputs(step, ids, results)
        if not documents:
            return

        def extract_all() -> dict[int, Extracted | Exception]:
            extracted: dict[int, Extracted | Exception] = {}
            for document_id, document in documents.items():
                try:
                    extracted[document_id] = extract_text(
                        document.data, document.media_type, filename=document.filename
                    )
                except Exception as exc:  # this document's outcome
                    extracted[document_id] = exc
            return extracted

        moves: dict[int, tuple[DocumentState, dict[str, Any]]] = {}
        texts: dict[int, tuple[str, dict[str, Any]]] = {}
        for document_id, extracted in (await _CPU.run(extract_all)).items():
            if isinstance(extracted, Exception):
                results[document_id] = extracted
                continue
            extraction = {
                "media_type": extracted.media_type,
                "charset": extracted.charset,
                "pages": extracted.pages,
                "truncated": extracted.truncated,
                "warnings": list(extracted.warnings),
            }
            moves[document_id] = (step.to_state, {"chars": len(extracted.text)} | extraction)
            texts[document_id] = (extracted.text, extraction)
        if not moves:
            return
        async with self._autocommit() as conn:
            await self._advance(
                conn,
                step,
                moves,
                results,
                writes="write_extracted",
                data=[{"id": i, "text": t, "extraction": e} for i, (t, e) in texts.items()],
            )

    async def _normalize(self, step: Step, ids: list[int], results: Results) -> None:
        rows = await self._read_inputs(
            step,
            "extracted_input",
            ids,
            results,
            needs=1,
            error="the document's extracted text is missing",
        )
        texts = {document_id: str(row[1]) for document_id, row in rows.items()}
        if not texts:
            return
        chunk_chars, max_chunks = self.config.chunk_chars, self.config.max_chunks
        normalized = await _CPU.run(
            lambda: {
                document_id: normalize(text, chunk_chars=chunk_chars, max_chunks=max_chunks)
                for document_id, text in texts.items()
            }
        )
        moves = {
            document_id: (
                step.to_state,
                {
                    "chars": result.chars,
                    "language": result.language,
                    "chunks": len(result.chunks),
                    "truncated": result.truncated,
                },
            )
            for document_id, result in normalized.items()
        }
        async with self._autocommit() as conn:
            await self._advance(
                conn,
                step,
                moves,
                results,
                writes="write_normalized",
                data=[
                    {
                        "id": i,
                        "normalized": result.text,
                        "chunks": list(result.chunks),
                        "truncated": result.truncated,
                    }
                    for i, result in normalized.items()
                ],
                columns={i: {"language": r.language} for i, r in normalized.items()},
            )

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

    async def _analyze(
        self, step: Step, documents: Mapping[int, Mapping[str, Any]], results: Results
    ) -> None:
        analyzers: dict[int, Analyzer] = {}
        for document_id, options in documents.items():
            try:
                analyzers[document_id] = self._analyzer_for(options.get("analyzer"))
            except PermanentFailure as exc:
                results[document_id] = exc
        if not analyzers:
            return
        rows = await self._read_inputs(
            step,
            "analysis_input",
            list(analyzers),
            results,
            needs=4,
            error="the document's normalized text is missing",
        )
        requests: dict[int, AnalysisRequest] = {}
        for document_id, row in rows.items():
            _state, title, language, metadata, chunks, truncated = row
            requests[document_id] = AnalysisRequest(
                title=title or "",
                chunks=list(chunks),
                language=language,
                truncated=bool(truncated),
                metadata=dict(metadata or {}),
            )
        outcomes: dict[int, AnalysisOutcome] = {}

        async def analyze_one(document_id: int, request: AnalysisRequest) -> None:
            try:
                outcomes[document_id] = await analyzers[document_id].analyze(request)
            except Exception as exc:  # this document's outcome, not the batch's
                results[document_id] = exc

        async with trio.open_nursery() as nursery:
            for document_id, request in requests.items():
                nursery.start_soon(analyze_one, document_id, request)
        if not outcomes:
            return
        moves = {
            document_id: (
                step.to_state,
                {
                    "provider": outcome.provider,
                    "category": outcome.analysis.category,
                    "severity": outcome.analysis.severity.value,
                },
            )
            for document_id, outcome in outcomes.items()
        }
        async with self._autocommit() as conn:
            await self._advance(
                conn,
                step,
                moves,
                results,
                writes="write_analyses",
                data=_analysis_rows([(i, o, requests[i].truncated) for i, o in outcomes.items()]),
                columns={
                    i: {"category": o.analysis.category, "severity": o.analysis.severity.value}
                    for i, o in outcomes.items()
                },
                new_analyses=True,
            )

    async def _route(self, step: Step, ids: list[int], results: Results) -> None:
        # Deciding is pure and quick: read, decide and write in one transaction.
        async with self.pool.transaction() as conn:
            rows = await (await conn.execute(SQL["route_input"], {"ids": sorted(ids)})).fetchall()
            inputs = _in_state(
                step,
                ids,
                {int(row[0]): tuple(row[1:]) for row in rows},
                results,
                1,
                "the document has no analysis to route",
            )
            decisions: dict[int, tuple[int, RoutingDecision]] = {}
            moves: dict[int, tuple[DocumentState, dict[str, Any]]] = {}
            now = datetime.now(UTC)
            for document_id, row in inputs.items():
                decision = decide(
                    _analysis_from_row(row[1:], self.config.taxonomy), self.config.routing, now
                )
                decisions[document_id] = (int(row[1]), decision)
                moves[document_id] = (
                    step.to_state,
                    {"open_case": decision.open_case, "reason": decision.reason},
                )
            moved = await self._advance(conn, step, moves, results)
            await open_cases(
                conn,
                [
                    (document_id, *decisions[document_id])
                    for document_id in sorted(moved)
                    if decisions[document_id][1].open_case
                ],
            )

    async def _complete(self, step: Step, ids: list[int], results: Results) -> None:
        moves: dict[int, tuple[DocumentState, dict[str, Any]]] = {
            document_id: (step.to_state, {}) for document_id in ids
        }
        async with self._autocommit() as conn:  # advance sets completed_at, retain_until
            await self._advance(conn, step, moves, results)


def _in_state(
    step: Step,
    ids: list[int],
    rows: Mapping[int, tuple[Any, ...]],
    results: Results,
    needs: int,
    error: str,
) -> dict[int, tuple[Any, ...]]:
    """See :meth:`Pipeline._read_inputs` (for rows read by the caller)."""
    kept: dict[int, tuple[Any, ...]] = {}
    for document_id in ids:
        row = rows.get(document_id)
        if row is None or row[0] != step.from_state.value:
            results[document_id] = SKIPPED
        elif row[needs] is None:
            results[document_id] = IngestionError(error)
        else:
            kept[document_id] = row
    return kept


def _outcome_of(target: DocumentState) -> Outcome:
    return Outcome.DUPLICATE if target is DocumentState.DUPLICATE else Outcome.ADVANCED


def _analysis_rows(rows: list[tuple[int, AnalysisOutcome, bool]]) -> list[dict[str, Any]]:
    """The ``write_analyses`` rows: one per document."""
    records = []
    for document_id, result, truncated in rows:
        analysis = result.analysis
        records.append(
            {
                "id": document_id,
                "category": analysis.category,
                "severity": analysis.severity.value,
                "summary": analysis.summary,
                "entities": [e.model_dump(mode="json") for e in analysis.entities],
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
                "truncated": truncated,
            }
        )
    return records


@attrs.frozen(kw_only=True)
class _BlobInput:
    media_type: str | None
    filename: str | None
    data: bytes


async def _claim_hashes(conn: TrioConnection, digests: Mapping[int, bytes]) -> dict[int, int]:
    """Claim each document's content in the caller's transaction; the documents that
    are duplicates, with their original's id. A document is the original if it is the
    first with its content (of the batch too), or takes over from a first one that
    failed (a re-upload of a document that failed must get its chance)."""
    ordered = sorted(digests.items(), key=lambda item: (item[1], item[0]))  # one lock order
    rows = await (
        await conn.execute(
            SQL["claim_hashes"],
            {"sha256s": [digest for _, digest in ordered], "ids": [i for i, _ in ordered]},
        )
    ).fetchall()
    claimed = {int(row[0]) for row in rows}
    originals: dict[int, int] = {}
    for document_id, digest in ordered:
        if document_id not in claimed:
            original = await _original_of(conn, digest, document_id)
            if original is not None:
                originals[document_id] = original
    return originals


async def _original_of(conn: TrioConnection, digest: bytes, document_id: int) -> int | None:
    """After a lost claim: None if ``document_id`` may still be the original (it holds
    the hash, or takes it over from a failed holder), else the holder's id."""
    params: dict[str, Any] = {"sha256": digest, "id": document_id}
    while True:
        # A separate statement: a conflicting row committed while the claim waited is
        # not in the claim's snapshot.
        row = await (await conn.execute(SQL["original_of_hash"], params)).fetchone()
        if row is None:  # the holder was deleted meanwhile: claim again
            if await (await conn.execute(SQL["claim_hash"], params)).fetchone() is not None:
                return None
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
