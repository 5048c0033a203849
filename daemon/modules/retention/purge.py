"""The purge: deletes what is past its retention period and not held, in small batches.

Rules (docs/retention.md):

* A **deadline is computed at purge time** from the row's own timestamp and the period
  configured *now*: a document's ``finished_at`` (set by a trigger when it reaches
  completed, failed or duplicate) plus its state's period; a resolved or closed case's
  resolution time plus the cases' period; a history or audit event's time plus its
  period. A changed period therefore applies to existing rows at the next run, and
  nothing needs recomputing.
* **Dependency order** (:data:`~daemon.modules.retention.rules.RUN_ORDER`): cases first,
  then documents, then history, then the audit log. A document with a case left (open,
  or resolved but not yet past the cases' period, or held) is kept: a case never loses
  its document. Deleting a document deletes its blob, text, analyses, history, hash entry
  (so the same content can be ingested again) and idempotency keys; documents that were
  duplicates of it keep existing with ``duplicate_of`` cleared.
* **Holds**: a held document keeps itself and everything above, its case, and the
  original it duplicates; a held case keeps itself and its document (with all of the
  document's data). History events of held documents are kept too.
* **Batches**: each batch is one transaction deleting at most ``batch.rows`` rows
  (oldest first) under a statement and lock timeout of ``batch.seconds``; a batch that
  runs out of time is retried with half the rows. Rows another transaction has locked
  are skipped (they go next run). Each batch adds its counts to the run's report in the
  same transaction, so a run killed or drained at any point loses nothing and counts
  nothing twice: the retried job (same run row) or the next command continues it.
* The audit log is purged as a prefix of its hash chain, with a signed checkpoint per
  batch (:func:`daemon.modules.audit.purge_batch`).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import trio
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from daemon.modules import audit
from daemon.modules.retention.errors import BatchOutOfTime
from daemon.modules.retention.rules import (
    DOCUMENT_STATES,
    RUN_ORDER,
    Kind,
    report_line,
    smaller_batch,
)
from daemon.shared.db.queries import load_queries
from daemon.shared.pagination import Page, decode_cursor, fetch_limit, page_of

if TYPE_CHECKING:
    from daemon.modules.retention.config import RetentionConfig
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

log = logging.getLogger("triaged.retention")

SQL = load_queries("daemon.modules.retention", "queries.sql")


@attrs.frozen(kw_only=True)
class Due:
    """For one kind, now: rows a run would delete, rows holds keep, and (documents)
    rows a case keeps."""

    due: int
    held: int
    kept_by_cases: int = 0


@attrs.frozen(kw_only=True)
class RunReport:
    """A purge run: ``report`` maps each kind to its counts (``deleted``, ``held``,
    ``seconds``, for documents ``kept_by_cases``). ``finished_at`` None: in progress or
    interrupted (the next run of the same job or command continues it)."""

    id: int
    job_id: int | None
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    report: dict[str, dict[str, Any]]

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> RunReport:
        id_, job_id, trigger, started_at, finished_at, report = row
        return cls(
            id=id_,
            job_id=job_id,
            trigger=trigger,
            started_at=started_at,
            finished_at=finished_at,
            report=report,
        )

    def lines(self) -> list[str]:
        return [report_line(k, self.report[k.value]) for k in RUN_ORDER if k.value in self.report]


async def run_purge(pool: Pool, config: RetentionConfig, *, job_id: int | None = None) -> RunReport:
    """Purge every kind in dependency order; return the run's report.

    ``job_id``: the queue job running it (its retries continue the same run); None: a
    command, which continues the newest unfinished command run, if any. Each batch
    commits on its own; cancelled (drain), the batch in flight rolls back and the rest
    is left to the retry.

    Raises:
        BatchOutOfTime: a one-row batch hit the time limit.
    """
    async with pool.transaction() as conn:
        run_id: int | None = None
        if job_id is None:
            row = await (await conn.execute(SQL["find_unfinished_run"])).fetchone()
            run_id = None if row is None else int(row[0])
        if run_id is None:
            trigger = "command" if job_id is None else "schedule"
            row = await (
                await conn.execute(SQL["start_run"], {"job_id": job_id, "trigger": trigger})
            ).fetchone()
            assert row is not None
            run_id = int(row[0])
    for kind in RUN_ORDER:
        await _purge_kind(pool, config, run_id, kind)
    kept: dict[str, dict[str, int]] = {}
    for kind, counts in (await due(pool, config)).items():
        kept[kind.value] = {"held": counts.held}
        if kind in DOCUMENT_STATES:
            kept[kind.value]["kept_by_cases"] = counts.kept_by_cases
    async with pool.transaction() as conn:
        row = await (
            await conn.execute(SQL["finish_run"], {"run_id": run_id, "kept": Jsonb(kept)})
        ).fetchone()
        assert row is not None
        report = RunReport.from_row(row)
        await audit.record(
            conn,
            audit.AuditContext.system(),
            "retention.run_finished",
            target_type="retention_run",
            target_id=report.id,
            details={"report": report.report},
        )
    deleted = {k: int(v.get("deleted", 0)) for k, v in report.report.items()}
    log.info(
        "retention run %d: %s",
        report.id,
        "; ".join(f"{k} {n} deleted" for k, n in deleted.items()),
        extra={"action": "retention.run", "run_id": report.id, "deleted": deleted},
    )
    return report


async def _purge_kind(pool: Pool, config: RetentionConfig, run_id: int, kind: Kind) -> None:
    rows = config.batch.rows
    period = config.periods.of(kind).total_seconds()
    below_seq: int | None = None
    signer: audit.CheckpointKey | None = None
    if kind is Kind.AUDIT_EVENTS:
        async with pool.connection() as conn:
            cutoff = datetime.now(UTC) - config.periods.of(kind)
            below_seq = await audit.purge_bound(conn, cutoff)
            signer = await audit.checkpoint_key(conn, config.checkpoint_key)
        if warning := audit.checkpoint_key_warning(config.checkpoint_key):
            log.warning(warning, extra={"action": "retention.checkpoint_key_unset"})
    while True:
        started = time.monotonic()
        try:
            async with pool.transaction() as conn:
                await conn.execute(SQL["lock_batch"])
                await conn.execute(SQL["batch_timeout"], {"ms": int(config.batch.seconds * 1000)})
                if kind is Kind.AUDIT_EVENTS:
                    assert below_seq is not None and signer is not None
                    deleted = await audit.purge_batch(
                        conn, below_seq=below_seq, limit=rows, signer=signer
                    )
                else:
                    deleted = await _delete_batch(conn, kind, period=period, limit=rows)
                await conn.execute(
                    SQL["add_deleted"],
                    {
                        "run_id": run_id,
                        "kind": kind.value,
                        "deleted": deleted,
                        "seconds": round(time.monotonic() - started, 6),
                    },
                )
        except (pg_errors.QueryCanceled, pg_errors.LockNotAvailable) as exc:
            smaller = smaller_batch(rows)
            if smaller is None:
                raise BatchOutOfTime(f"purging {kind.value}: one row took too long") from exc
            log.warning(
                "retention: a batch of %d %s ran out of time; retrying with %d",
                rows,
                kind.value,
                smaller,
                extra={"action": "retention.batch_shrunk", "kind": kind.value},
            )
            rows = smaller
            continue
        if deleted < rows:
            return
        await trio.lowlevel.checkpoint()


async def _delete_batch(conn: TrioConnection, kind: Kind, *, period: float, limit: int) -> int:
    params: dict[str, Any] = {"period": period, "limit": limit}
    if kind is Kind.RESOLVED_CASES:
        query = SQL["purge_cases"]
    elif kind is Kind.DOCUMENT_HISTORY:
        query = SQL["purge_history"]
    else:
        query = SQL["purge_documents"]
        params["state"] = DOCUMENT_STATES[kind]
    cursor = await conn.execute(query, params)
    return cursor.rowcount


async def due(pool: Pool, config: RetentionConfig) -> dict[Kind, Due]:
    """What a run would delete now, per kind, and what holds (and cases) keep; deletes
    nothing. Exact for a run starting now with no concurrent changes (documents whose
    case the run deletes first count as due)."""
    periods = config.periods
    case_period = periods.of(Kind.RESOLVED_CASES).total_seconds()
    result: dict[Kind, Due] = {}
    async with pool.transaction() as conn:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for kind in RUN_ORDER:
            period = periods.of(kind).total_seconds()
            if kind is Kind.RESOLVED_CASES:
                row = await (await conn.execute(SQL["due_cases"], {"period": period})).fetchone()
                assert row is not None
                result[kind] = Due(due=row[0], held=row[1])
            elif kind is Kind.DOCUMENT_HISTORY:
                row = await (await conn.execute(SQL["due_history"], {"period": period})).fetchone()
                assert row is not None
                result[kind] = Due(due=row[0], held=row[1])
            elif kind is Kind.AUDIT_EVENTS:
                cutoff = datetime.now(UTC) - periods.of(kind)
                below = await audit.purge_bound(conn, cutoff)
                result[kind] = Due(due=await audit.count_below(conn, below), held=0)
            else:
                row = await (
                    await conn.execute(
                        SQL["due_documents"],
                        {
                            "state": DOCUMENT_STATES[kind],
                            "period": period,
                            "case_period": case_period,
                        },
                    )
                ).fetchone()
                assert row is not None
                result[kind] = Due(due=row[0], held=row[1], kept_by_cases=row[2])
    return result


async def list_runs(
    conn: TrioConnection, *, cursor: str | None = None, limit: int = 50
) -> Page[RunReport]:
    """Run reports newest first. Read-only.

    Raises:
        ValidationFailed: a malformed cursor.
    """
    rows = await (
        await conn.execute(
            SQL["list_runs"], {"before_id": decode_cursor(cursor), "limit": fetch_limit(limit)}
        )
    ).fetchall()
    return page_of([RunReport.from_row(r) for r in rows], limit, key=lambda r: r.id)
