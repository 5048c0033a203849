"""The ingestion store: the module's SQL and the statements every part of it shares.

* :data:`SQL`: the named queries of ``queries.sql`` (intake, documents, the steps);
* :func:`record_event`: one row of a document's history, in the caller's transaction;
* :class:`IngestionStore`: what the step runner and the steps do to the tables: read a
  batch's inputs, move documents on (:meth:`IngestionStore.advance`), fail one, keep an
  invalid model answer;
* :func:`claim_hashes`: the duplicate-claim protocol of the hash step;
* :func:`analysis_rows` and :func:`analysis_from_row`: an analysis to and from its row.

Nothing here decides what a step does; it only reads and writes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, LiteralString, cast

import attrs
from psycopg.types.json import Jsonb

from daemon.modules.ingestion.errors import IngestionError
from daemon.modules.ingestion.states import DocumentState, Outcome, next_step, transition
from daemon.modules.ingestion.steps.contract import SKIPPED, Settled, StepResult
from daemon.shared.db.queries import load_queries

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence
    from datetime import timedelta

    from daemon.modules.analysis import Analysis, AnalysisOutcome, Taxonomy
    from daemon.modules.ingestion.states import Step
    from daemon.modules.ingestion.steps.contract import Move
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

SQL = load_queries("daemon.modules.ingestion", "queries.sql")

# The advance statement, alone (None) and with each step's own writes in it.
_WRITES_MARKER = "-- step writes --"
assert _WRITES_MARKER in SQL["advance"]
STEP_WRITES = ("write_extracted", "write_normalized", "write_analyses")
_ADVANCE: dict[str | None, LiteralString] = {
    None: SQL["advance"],
    **{
        name: cast("LiteralString", SQL["advance"].replace(_WRITES_MARKER, SQL[name]))
        for name in STEP_WRITES
    },
}

ERROR_KEPT = 2000  # characters of a failure's reason kept on the document
RAW_OUTPUT_KEPT = 20_000  # characters of an invalid model answer kept in the history


async def record_event(
    conn: TrioConnection,
    document_id: int,
    from_state: DocumentState | None,
    to_state: DocumentState,
    step: Step | None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """One row of the document's history, in the caller's transaction."""
    await conn.execute(
        SQL["insert_event"],
        {
            "id": document_id,
            "from_state": None if from_state is None else from_state.value,
            "to_state": to_state.value,
            "step": None if step is None else step.name,
            "detail": Jsonb(dict(detail or {})),
        },
    )


@attrs.frozen
class IngestionStore:
    """The steps' reads and writes on ``pool``; ``retention`` (of completed documents)
    and ``max_attempts`` (of the jobs it enqueues) come from the pipeline's config."""

    pool: Pool
    retention: timedelta
    max_attempts: int

    @contextlib.asynccontextmanager
    async def writing(self, *, transaction: bool) -> AsyncIterator[TrioConnection]:
        """A connection for a step's writes: in a transaction, or in autocommit for a
        step whose writes are one statement (no BEGIN/COMMIT round trips)."""
        if transaction:
            async with self.pool.transaction() as conn:
                yield conn
        else:
            async with self.pool.connection() as conn:
                await conn.set_autocommit(True)
                yield conn

    async def read(self, query: str, ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
        """Rows of ``query`` by document id (autocommit: no transaction to end); the first
        column of each query is the document's id, and is not in the tuple."""
        async with self.writing(transaction=False) as conn:
            rows = await (await conn.execute(SQL[query], {"ids": list(ids)})).fetchall()
        return {int(row[0]): tuple(row[1:]) for row in rows}

    async def read_inputs(
        self, step: Step, query: str, ids: Sequence[int], *, needs: int, error: str
    ) -> dict[int, tuple[Any, ...] | Settled]:
        """The input rows (the state first) of ``ids``: see :func:`in_state`."""
        return in_state(step, ids, await self.read(query, ids), needs=needs, error=error)

    async def advance(
        self,
        conn: TrioConnection,
        step: Step,
        moves: Mapping[int, Move[Any]],
        *,
        writes: str | None = None,
        new_analyses: bool = False,
    ) -> set[int]:
        """Move documents on, record the transitions and enqueue what follows, in one
        statement: atomic even on an autocommit connection, in the caller's transaction
        otherwise. ``writes`` names a step's own CTEs (``STEP_WRITES``) run in that
        statement on the moves' ``row``; a move's ``columns`` are the document's new
        language, category or severity; ``new_analyses`` draws each document's new
        analysis id. Returns the ids moved: a document no longer in the step's state is
        not (its job was redelivered, or an operator moved it)."""
        if not moves:
            return set()
        ids = sorted(moves)  # one lock order for every batch
        targets = [transition(step.from_state, step, _outcome_of(moves[i].to_state)) for i in ids]
        following = next_step(step)
        data = [{"id": i} | dict(moves[i].row or {}) for i in ids if moves[i].row is not None]
        rows = await (
            await conn.execute(
                _ADVANCE[writes],
                {
                    "ids": ids,
                    "rows": Jsonb(
                        [
                            {"id": i, "to_state": target.value, "detail": dict(moves[i].detail)}
                            | dict(moves[i].columns)
                            for i, target in zip(ids, targets, strict=True)
                        ]
                    ),
                    "new_analyses": new_analyses,
                    "from_state": step.from_state.value,
                    "step": step.name,
                    "retention": self.retention.total_seconds(),
                    # The next jobs (no dedup key: the state guard makes this run once
                    # per document and step), for the documents that reached to_state.
                    "next_queue": None if following is None else following.queue,
                    "onward_state": step.to_state.value,
                    "max_attempts": self.max_attempts,
                    "data": Jsonb(data) if writes is not None else None,
                },
            )
        ).fetchall()
        return {int(row[0]) for row in rows}

    async def fail(self, step: Step, document_id: int, error: str) -> bool:
        """Fail the document at ``step`` if it is still where the step found it, with the
        reason in its row and its history, in one transaction. False: it was not."""
        async with self.pool.transaction() as conn:
            row = await (
                await conn.execute(
                    SQL["fail_step"],
                    {
                        "id": document_id,
                        "step": step.name,
                        "error": error[:ERROR_KEPT],
                        "from_state": step.from_state.value,
                    },
                )
            ).fetchone()
            if row is None:
                return False
            await record_event(
                conn,
                document_id,
                step.from_state,
                DocumentState.FAILED,
                step,
                {"error": error[:ERROR_KEPT]},
            )
        return True

    async def keep_invalid_output(
        self, step: Step, document_id: int, raw_output: str, errors: Sequence[Any]
    ) -> None:
        """An invalid model answer goes to the document's history (its state unchanged)."""
        async with self.pool.transaction() as conn:
            await record_event(
                conn,
                document_id,
                step.from_state,
                step.from_state,
                step,
                {"invalid_output": raw_output[:RAW_OUTPUT_KEPT], "errors": list(errors[:20])},
            )

    async def insert_blob(self, conn: TrioConnection, document_id: int, data: bytes) -> None:
        await conn.execute(SQL["insert_blob"], {"id": document_id, "data": data})

    async def set_fetched(
        self, conn: TrioConnection, document_id: int, media_type: str | None, size: int
    ) -> None:
        await conn.execute(
            SQL["set_fetched"], {"id": document_id, "media_type": media_type, "size": size}
        )

    async def set_hashes(
        self, conn: TrioConnection, hashes: Mapping[int, tuple[bytes, int | None]]
    ) -> None:
        """Each document's SHA-256 and the original it duplicates (None: it is one)."""
        if not hashes:
            return
        ordered = sorted(hashes)
        await conn.execute(
            SQL["set_hashes"],
            {
                "ids": ordered,
                "sha256s": [hashes[i][0] for i in ordered],
                "duplicates_of": [hashes[i][1] for i in ordered],
            },
        )

    async def route_inputs(
        self, conn: TrioConnection, step: Step, ids: Sequence[int]
    ) -> dict[int, tuple[Any, ...] | Settled]:
        """In the caller's transaction: lock the documents (in id order) and read their
        current analysis (the row's second column on: id, category, ...)."""
        rows = await (await conn.execute(SQL["route_input"], {"ids": sorted(ids)})).fetchall()
        return in_state(
            step,
            ids,
            {int(row[0]): tuple(row[1:]) for row in rows},
            needs=1,
            error="the document has no analysis to route",
        )


def in_state(
    step: Step,
    ids: Sequence[int],
    rows: Mapping[int, tuple[Any, ...]],
    *,
    needs: int,
    error: str,
) -> dict[int, tuple[Any, ...] | Settled]:
    """Per document: its row if it is still in the step's state (the row's first column)
    and its column ``needs`` is there; else ``skipped`` (not in the state any more), or
    ``IngestionError(error)`` (its input is missing: it fails)."""
    kept: dict[int, tuple[Any, ...] | Settled] = {}
    for document_id in ids:
        row = rows.get(document_id)
        if row is None or row[0] != step.from_state.value:
            kept[document_id] = SKIPPED
        elif row[needs] is None:
            kept[document_id] = IngestionError(error)
        else:
            kept[document_id] = row
    return kept


def advanced(state: DocumentState) -> StepResult:
    return StepResult(outcome="advanced", state=state.value)


def _outcome_of(target: DocumentState) -> Outcome:
    return Outcome.DUPLICATE if target is DocumentState.DUPLICATE else Outcome.ADVANCED


async def claim_hashes(conn: TrioConnection, digests: Mapping[int, bytes]) -> dict[int, int]:
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


def analysis_row(result: AnalysisOutcome, *, truncated: bool) -> dict[str, Any]:
    """A ``write_analyses`` row (without the document's id)."""
    analysis = result.analysis
    return {
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


def analysis_from_row(row: Sequence[Any], taxonomy: Taxonomy) -> Analysis:
    """An analysis read back (``route_input``'s columns from the analysis' id on)."""
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
