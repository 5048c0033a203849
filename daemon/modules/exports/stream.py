"""A CSV export streamed from PostgreSQL: ``COPY (SELECT ...) TO STDOUT`` in byte chunks.

Contract:

* **Streaming.** :class:`ExportStream` yields the COPY's output as PostgreSQL produces
  it, in chunks of about ``chunk_bytes``; nothing is read ahead of the consumer, so a
  slow reader slows the query and memory stays bounded (one chunk). PostgreSQL does the
  CSV quoting (RFC 4180), the neutralisation and the time format (see
  :mod:`daemon.modules.exports.columns`); Python only moves bytes.
* **One connection, one slot.** An export holds one pool connection for its whole run
  (a read-only transaction: one snapshot, rolled back at the end) and one of the
  process's export slots (:class:`ExportSlots`): a process never runs more exports than
  it has slots, so exports cannot take every connection of the pool from the API.
* **Cancellation.** Cancelling the consumer (a client gone, the HTTP grace deadline)
  cancels the COPY on the server at once; the connection goes back to the pool clean.
* **Trio.** The generator yields outside any cancel scope or nursery (the pool lease
  and psycopg's COPY block open none), as Trio requires of async generators.
* **Audited.** Before the COPY starts (so before the first byte is sent), the event
  ``export.started`` (the kind, the filters, the columns) is committed in its own
  transaction, bounded by ``audit_timeout``; if it cannot be, the export is refused
  (:class:`DatabaseError`, raised by :meth:`ExportStream.start`) and nothing is sent:
  every export that sends data is audited, even one the process dies in. When the
  export ends, whether complete, cut or failed, the event ``export.<kind>`` (the
  filters, the columns, the rows read from the database, whether it was complete) is
  written best-effort in its own transaction (shielded, bounded by ``audit_timeout``;
  a failure is logged).
"""

from __future__ import annotations

import logging
import weakref
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Self

import attrs
import psycopg
import trio
from psycopg import sql

from daemon.modules.audit import record
from daemon.modules.exports.columns import ExportKind, columns_sql
from daemon.modules.exports.errors import ExportsBusy
from daemon.shared.db.copy_out import DEFAULT_CHUNK_BYTES, copy_out
from daemon.shared.db.queries import load_queries
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from daemon.modules.audit import AuditContext
    from daemon.modules.exports.columns import Column
    from daemon.shared.db.pool import Pool

SQL = load_queries("daemon.modules.exports", "queries.sql")

AUDIT_TIMEOUT = 5.0
"""Longest wait for each audit event of an export: the start's (then the export is
refused) and the end's (shielded from cancellation; then only logged)."""

BOM = "\ufeff".encode()

log = logging.getLogger("triaged.exports")


class ExportSlots:
    """The process's cap on exports running at once (each holds a pool connection)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0

    def take(self) -> _Slot:
        """A slot, released by the export stream when it ends.

        Raises:
            ExportsBusy: every slot is taken.
        """
        if self.running >= self.limit:
            raise ExportsBusy(f"{self.limit} export(s) already running; try again shortly")
        self.running += 1
        return _Slot(self)


class _Slot:
    def __init__(self, slots: ExportSlots) -> None:
        self._slots: ExportSlots | None = slots

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        if self._slots is not None:
            self._slots.running -= 1
            self._slots = None


@attrs.frozen(kw_only=True)
class ExportRequest:
    """What to export: the kind, its columns, the list filter's predicate and parameters
    (from the module's ``*_filter_sql()``), and the filters as given (for the audit)."""

    kind: ExportKind
    columns: tuple[Column, ...]
    predicate: sql.Composable
    params: Mapping[str, Any]
    filters: Mapping[str, Any]
    bom: bool = False

    def statement(self) -> sql.Composed:
        """The COPY statement of this export."""
        return sql.SQL(SQL[f"export_{self.kind.value}"]).format(
            columns=columns_sql(self.columns), filter=self.predicate
        )


class ExportStream:
    """The export's bytes as an async iterable, for a streamed HTTP response body.

    Iterating runs the export (see the module docstring); ``aclose()`` ends it early.
    The slot is released when the export ends, or when the stream is closed or
    collected without having been iterated.
    """

    def __init__(
        self,
        pool: Pool,
        request: ExportRequest,
        slot: _Slot,
        *,
        context: AuditContext,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        audit_timeout: float = AUDIT_TIMEOUT,
    ) -> None:
        self.rows = 0
        self.complete = False
        self.started_audited = False
        self._audit_timeout = audit_timeout
        self._pool = pool
        self._request = request
        self._context = context
        self._chunk_bytes = chunk_bytes
        self._slot = slot
        self._chunks = self._run()
        self._first: bytes | None = None
        weakref.finalize(self, slot.release)

    async def start(self) -> None:
        """Run the export up to its first chunk (the header line and the first rows).

        Call it before choosing the response: an error of the query itself (a value
        PostgreSQL refuses, the database unavailable) is raised here, where it can still
        be answered with its own status, instead of cutting a 200 response. The export
        is then over (its slot released, its audit event written).

        Raises:
            DatabaseError: the ``export.started`` event could not be committed within
                the audit timeout: the export is refused, no COPY ran.
            psycopg.Error: the query itself failed.
        """
        self._first = await self._chunks.__anext__()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        try:
            await self._chunks.aclose()
        finally:
            self._slot.release()

    async def _run(self) -> AsyncIterator[bytes]:
        started = trio.current_time()
        messages = 0
        prefix = BOM if self._request.bom else b""
        try:
            await self._audit_start()  # committed before any byte is produced
            async with self._pool.connection() as conn:
                await conn.set_read_only(True)  # the pool resets it on release
                await conn.execute(SQL["export_session"])  # opens the transaction
                chunks = copy_out(
                    conn,
                    self._request.statement(),
                    self._request.params,
                    chunk_bytes=self._chunk_bytes,
                )
                async with aclosing(chunks):
                    async for chunk in chunks:
                        messages += chunk.messages
                        self.rows = max(0, messages - 1)  # the header is one message
                        yield prefix + chunk.data if prefix else chunk.data
                        prefix = b""
                await conn.rollback()  # read only: nothing to keep
            self.complete = True
        finally:
            self._slot.release()
            if self.started_audited:  # else no export ran: nothing to report
                await self._audit(trio.current_time() - started)

    async def _audit_start(self) -> None:
        """Commit ``export.started`` in its own transaction.

        Raises:
            DatabaseError: not committed within the audit timeout (e.g. a wait on the
                audit chain's lock) or a database error: the export must not run.
        """
        request = self._request
        details = {
            "kind": request.kind.value,
            "filters": dict(request.filters),
            "columns": [column.name for column in request.columns],
        }
        with trio.move_on_after(self._audit_timeout) as scope:
            try:
                async with self._pool.transaction(timeout=self._audit_timeout) as conn:
                    await record(
                        conn,
                        self._context,
                        "export.started",
                        target_type="export",
                        target_id=request.kind.value,
                        details=details,
                    )
            except psycopg.Error as exc:
                log.error(
                    "refused an export: could not audit its start: %s",
                    type(exc).__name__,
                    extra={"action": "export.audit_failed", **details},
                )
                raise DatabaseError("could not audit the export's start") from None
        if scope.cancelled_caught:
            log.error(
                "refused an export: could not audit its start within %g s",
                self._audit_timeout,
                extra={"action": "export.audit_failed", **details},
            )
            raise DatabaseError("could not audit the export's start in time")
        self.started_audited = True

    async def _audit(self, seconds: float) -> None:
        request = self._request
        details = {
            "filters": dict(request.filters),
            "columns": [column.name for column in request.columns],
            "rows": self.rows,
            "complete": self.complete,
            "seconds": round(seconds, 3),
        }
        timeout = self._audit_timeout
        with trio.CancelScope(shield=True, deadline=trio.current_time() + timeout) as scope:
            try:
                async with self._pool.transaction(timeout=timeout) as conn:
                    await record(
                        conn,
                        self._context,
                        f"export.{request.kind.value}",
                        target_type="export",
                        target_id=request.kind.value,
                        details=details,
                    )
            except Exception as exc:
                log.error(
                    "could not audit an export: %s",
                    type(exc).__name__,
                    extra={"action": "export.audit_failed", **details},
                )
        if scope.cancelled_caught:
            log.error(
                "could not audit an export within %g s",
                timeout,
                extra={"action": "export.audit_failed", **details},
            )
        log.info(
            "export of %s: %d row(s)%s",
            request.kind.value,
            self.rows,
            "" if self.complete else " (cut)",
            extra={"action": f"export.{request.kind.value}", **details},
        )
