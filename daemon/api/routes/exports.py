"""``/api/v1/exports``: documents, cases and the audit log as streamed CSV files.

Each export takes the filters of the matching list route (its query model, without
``cursor`` and ``limit``) and translates them with the same module function as the
list, plus ``columns`` (a comma-separated subset, in the order wanted) and ``bom``
(``1``: a UTF-8 byte-order mark first, for spreadsheet programs). The CSV itself is
written by PostgreSQL and streamed as it comes (see :mod:`daemon.modules.exports`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field
from quart import Blueprint, Response, current_app, request

from daemon.api.access import Reply, requires
from daemon.api.authn import audit_context
from daemon.api.context import current_context
from daemon.api.query import QueryModel, query_params
from daemon.api.routes.audit import AuditFilterQuery, audit_filter
from daemon.api.routes.cases import CaseFilterQuery, case_filter_of
from daemon.api.routes.documents import DocumentFilterQuery, document_filter
from daemon.modules.audit import audit_filter_sql
from daemon.modules.auth import Role
from daemon.modules.cases import case_filter_sql
from daemon.modules.exports import (
    COLUMNS,
    ExportKind,
    ExportRequest,
    ExportSlots,
    ExportStream,
    file_name,
    select_columns,
)
from daemon.modules.ingestion import document_filter_sql

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from psycopg import sql

blueprint = Blueprint("exports", __name__, url_prefix="/api/v1/exports")

CSV_MEDIA_TYPE = "text/csv; charset=utf-8; header=present"
_SLOTS = "triaged.export_slots"


class ExportOptions(QueryModel):
    columns: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="comma-separated column names, in the order wanted (default: all)",
    )
    bom: bool = Field(default=False, description="1: start with a UTF-8 byte-order mark")


class DocumentExportQuery(DocumentFilterQuery, ExportOptions):
    pass


class CaseExportQuery(CaseFilterQuery, ExportOptions):
    pass


class AuditExportQuery(AuditFilterQuery, ExportOptions):
    pass


def _reply(kind: ExportKind) -> Reply:
    return Reply(
        media_type="text/csv",
        description=f"CSV (RFC 4180, UTF-8), a header line then one row per record; "
        f"columns: {', '.join(COLUMNS[kind])}",
        headers=("Content-Disposition",),
    )


@blueprint.get("/documents.csv")
@requires(Role.VIEWER, query=DocumentExportQuery, replies={200: _reply(ExportKind.DOCUMENTS)})
async def documents() -> Response:
    """Documents matching the filters of ``GET /api/v1/documents``, oldest first, as CSV."""
    query = query_params(DocumentExportQuery)
    filters = document_filter(query)
    predicate, params = document_filter_sql(filters)
    return await _export(ExportKind.DOCUMENTS, query, predicate, params)


@blueprint.get("/cases.csv")
@requires(Role.VIEWER, query=CaseExportQuery, replies={200: _reply(ExportKind.CASES)})
async def cases() -> Response:
    """Cases matching the filters of ``GET /api/v1/cases``, oldest first, as CSV."""
    query = query_params(CaseExportQuery)
    predicate, params = case_filter_sql(case_filter_of(query))
    return await _export(ExportKind.CASES, query, predicate, params)


@blueprint.get("/audit.csv")
@requires(Role.ADMIN, query=AuditExportQuery, replies={200: _reply(ExportKind.AUDIT)})
async def audit() -> Response:
    """Audit events matching the filters of ``GET /api/v1/audit``, oldest first, as CSV."""
    query = query_params(AuditExportQuery)
    predicate, params = audit_filter_sql(audit_filter(query))
    return await _export(ExportKind.AUDIT, query, predicate, params)


async def _export(
    kind: ExportKind, query: ExportOptions, predicate: sql.SQL, params: dict[str, Any]
) -> Response:
    """The streamed response. Raises ValidationFailed (columns) or ExportsBusy."""
    columns = select_columns(kind, query.columns)
    day = datetime.now(UTC).date()
    disposition = f'attachment; filename="{file_name(kind, day)}"'
    if request.method == "HEAD":  # the headers only: no export runs for nothing
        head = Response(_nothing(), status=200, content_type=CSV_MEDIA_TYPE)
        head.headers["Content-Disposition"] = disposition
        return head
    context = current_context()
    pool = context.db
    slots: ExportSlots = current_app.extensions.setdefault(
        _SLOTS, ExportSlots(context.settings.export_max_concurrent)
    )
    given = query.model_dump(mode="json", exclude_none=True, exclude={"columns", "bom"})
    export = ExportRequest(
        kind=kind,
        columns=columns,
        predicate=predicate,
        params=params,
        filters=given,
        bom=query.bom,
    )
    stream = ExportStream(pool, export, slots.take(), context=audit_context())
    await stream.start()  # a query PostgreSQL refuses is answered 4xx/5xx, not a cut 200
    response = Response(stream, status=200, content_type=CSV_MEDIA_TYPE)
    response.headers["Content-Disposition"] = disposition
    # The body is as long as the export: no total timeout (Quart's default would cut it
    # after RESPONSE_TIMEOUT and leave a truncated file). A client that goes away
    # cancels it; shutdown cuts it at the HTTP grace deadline.
    response.timeout = None
    return response


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing
