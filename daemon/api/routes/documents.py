"""``/api/v1/documents``: intake (JSON or multipart upload), listing, details, retry,
reanalysis, deletion."""

from __future__ import annotations

import re
from typing import Any

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from quart import Blueprint, Response, request

from daemon.api.access import Reply, requires
from daemon.api.authn import audit_context, current_principal
from daemon.api.body import field_errors, json_body
from daemon.api.context import current_context
from daemon.api.field_types import DateTime, JsonInt  # noqa: TC001 (pydantic reads it at run time)
from daemon.api.json_input import parse_json
from daemon.api.query import Cursor, QueryModel, query_params
from daemon.api.responses import json_response, no_content, page_response
from daemon.api.routes.cases import case_view
from daemon.api.schemas.base import page_of
from daemon.api.schemas.documents import DocumentDetails, DocumentReceipt, DocumentView
from daemon.api.uploads import file_bytes
from daemon.modules.analysis import check_analyzer_choice as analyzer_choice_check
from daemon.modules.auth import Role
from daemon.modules.ingestion import (
    AnalysisRecord,
    Document,
    DocumentFilter,
    DocumentState,
    NewDocument,
    delete_document,
    document_details,
    list_document_views,
    reanalyze_document,
    receive_document,
    retry_document,
)
from daemon.modules.sources import check_upload_source
from daemon.shared.errors import ValidationFailed
from daemon.shared.pagination import MAX_ID

blueprint = Blueprint("documents", __name__, url_prefix="/api/v1/documents")

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
DEFAULT_CONTENT_TYPE = "text/plain; charset=utf-8"


# "Exactly one of content or url" (check_new_document), in JSON Schema.
_CONTENT_OR_URL = [
    {
        "required": ["content"],
        "properties": {"content": {"type": "string"}, "url": {"type": "null"}},
    },
    {"required": ["url"], "properties": {"url": {"type": "string"}, "content": {"type": "null"}}},
]


class DocumentBody(BaseModel):
    """A document as JSON: ``content`` (text) or ``url`` (fetched by the pipeline).

    Exactly one of the two (a multipart upload gives a ``file`` instead): the intake
    refuses neither or both with a 422; the schema says so too.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": _CONTENT_OR_URL})

    title: str = Field(default="", max_length=1000)
    content: str | None = None
    url: str | None = Field(default=None, max_length=4000)
    media_type: str | None = Field(
        default=None, max_length=200, description="of content; default text/plain"
    )
    source_id: JsonInt | None = Field(
        default=None, ge=1, le=MAX_ID, description="a source of kind upload; default: the built-in"
    )
    external_id: str | None = Field(default=None, max_length=500)
    metadata: dict[str, Any] = Field(default_factory=dict)


class UploadFields(BaseModel):
    """The form fields beside a multipart upload (``metadata`` is checked apart)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="", max_length=1000)
    source_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    external_id: str | None = Field(default=None, max_length=500)
    metadata: str | None = None


class DocumentFilterQuery(QueryModel):
    """The filters of the document list, shared with the CSV export."""

    state: DocumentState | None = None
    source_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    category: str | None = Field(default=None, max_length=100)
    severity: str | None = Field(default=None, max_length=20)
    since: DateTime | None = Field(default=None, description="created_at >= since")
    until: DateTime | None = Field(default=None, description="created_at < until")
    q: str | None = Field(default=None, min_length=1, max_length=200, description="text search")


class DocumentListQuery(DocumentFilterQuery):
    cursor: Cursor | None = None
    limit: int = Field(default=50, ge=1, le=500)


def document_filter(query: DocumentFilterQuery) -> DocumentFilter:
    """The module's filter of the query's filter parameters (list and export)."""
    return DocumentFilter(
        state=query.state,
        source_id=query.source_id,
        category=query.category,
        severity=query.severity,
        since=query.since,
        until=query.until,
        text=query.q,
    )


def document_view(document: Document) -> dict[str, Any]:
    view = {
        name: getattr(document, name)
        for name in (
            "id", "title", "state", "source_id", "external_id", "url", "filename",
            "media_type", "size_bytes", "sha256", "failed_step", "error", "duplicate_of",
            "metadata", "language", "category", "severity", "created_by", "created_at",
            "updated_at", "completed_at", "retain_until",
        )
    }  # fmt: skip
    view["state"] = document.state.value
    return view


# document_view as the server builds it for the list, over ``documents d``
# (tests/integration/test_api_read_views.py holds the two to the same JSON).
DOCUMENT_VIEW_SQL = sql.SQL(
    """json_build_object(
    'id', d.id, 'title', d.title, 'state', d.state, 'source_id', d.source_id,
    'external_id', d.external_id, 'url', d.url, 'filename', d.filename,
    'media_type', d.media_type, 'size_bytes', d.size_bytes,
    'sha256', encode(d.sha256, 'hex'), 'failed_step', d.failed_step, 'error', d.error,
    'duplicate_of', d.duplicate_of, 'metadata', coalesce(d.metadata, '{}'::jsonb),
    'language', d.language, 'category', d.category, 'severity', d.severity,
    'created_by', d.created_by, 'created_at', api_time(d.created_at),
    'updated_at', api_time(d.updated_at), 'completed_at', api_time(d.completed_at),
    'retain_until', api_time(d.retain_until))"""
)


def analysis_view(record: AnalysisRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "run": record.run,
        "category": record.category,
        "severity": record.severity,
        "summary": record.summary,
        "entities": record.entities,
        "confidence": record.confidence,
        "rationale": record.rationale,
        "provider": record.provider,
        "model": record.model,
        "version": record.version,
        "latency_ms": record.latency_ms,
        "calls": record.calls,
        "repair_rounds": record.repair_rounds,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "chunked": record.chunked,
        "truncated": record.truncated,
        "created_at": record.created_at,
    }


@blueprint.post("")
@requires(
    Role.ANALYST,
    body=DocumentBody,
    form=UploadFields,
    replies={202: Reply(model=DocumentReceipt, description="Accepted", headers=("Location",))},
)
async def create() -> Response:
    """Submit a document: JSON (``content`` or ``url``) or a multipart upload (``file``).

    Answers 202 with the document's id and state ``received``; the pipeline does the
    rest. An ``Idempotency-Key`` header makes a retried request answer the first
    response instead of creating a second document.
    """
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise ValidationFailed(
            [{"field": "Idempotency-Key", "message": "1 to 200 visible ASCII characters"}]
        )
    if request.mimetype == "multipart/form-data":
        new = await _from_multipart()
    else:
        body = await json_body(DocumentBody, max_bytes=current_context().settings.max_request_bytes)
        # json_body refused lone surrogates: the content encodes.
        content = None if body.content is None else body.content.encode("utf-8")
        new = NewDocument(
            title=body.title,
            content=content,
            url=body.url,
            media_type=body.media_type
            or (DEFAULT_CONTENT_TYPE if body.content is not None else None),
            source_id=body.source_id,
            external_id=body.external_id,
            metadata=body.metadata,
        )
    context = current_context()
    settings = context.settings
    if new.source_id is not None:
        await check_upload_source(context.db, new.source_id)
    receipt = await receive_document(
        context.intake,
        new,
        context=audit_context(),
        max_bytes=settings.max_document_bytes,
        max_attempts=settings.ingest_max_attempts,
        idempotency_key=key,
    )
    headers = {"Location": f"/api/v1/documents/{receipt.id}"}
    if receipt.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(receipt.as_json(), 202, headers=headers)


async def _from_multipart() -> NewDocument:
    form = await request.form
    files = await request.files
    uploads = files.getlist("file")
    if len(uploads) != 1 or set(files) != {"file"}:
        raise ValidationFailed(
            [{"field": "file", "message": "exactly one multipart file part, named file"}]
        )
    upload = uploads[0]
    data = file_bytes(upload)  # the parsed part's own buffer: no copy
    media_type = upload.mimetype or None
    if upload.mimetype_params.get("charset") and media_type:
        media_type = f"{media_type}; charset={upload.mimetype_params['charset']}"
    metadata: Any = {}
    if form.get("metadata"):
        metadata = parse_json(form["metadata"], what="metadata", field="metadata")
        if not isinstance(metadata, dict):
            raise ValidationFailed([{"field": "metadata", "message": "must be a JSON object"}])
    fields = {name: form.getlist(name) for name in form}
    if any(len(values) > 1 for values in fields.values()):
        raise ValidationFailed(
            [
                {"field": n, "message": "given more than once"}
                for n, v in fields.items()
                if len(v) > 1
            ]
        )
    try:
        described = UploadFields.model_validate({n: v[0] for n, v in fields.items()})
    except PydanticValidationError as exc:
        raise ValidationFailed(field_errors(exc, whole="(form)")) from None
    return NewDocument(
        title=described.title,
        content=data,
        media_type=media_type,
        filename=(upload.filename or None) and upload.filename[:1000],
        source_id=described.source_id,
        external_id=described.external_id or None,
        metadata=metadata,
    )


@blueprint.get("")
@requires(Role.VIEWER, query=DocumentListQuery, replies={200: page_of(DocumentView)})
async def list_() -> Response:
    """Documents newest first, filtered; pass ``next_cursor`` as ``cursor``."""
    query = query_params(DocumentListQuery)
    filters = document_filter(query)
    async with current_context().db.connection() as conn:
        await conn.set_autocommit(True)  # one statement: no BEGIN and ROLLBACK round trips
        result = await list_document_views(
            conn, DOCUMENT_VIEW_SQL, filters=filters, cursor=query.cursor, limit=query.limit
        )
    return page_response(result.items, result.next_cursor)


@blueprint.get("/<int:document_id>")
@requires(Role.VIEWER, replies={200: DocumentDetails})
async def show(document_id: int) -> Response:
    """One document with its state history, its current analysis (and earlier runs) and
    its case."""
    async with current_context().db.connection() as conn:
        await conn.set_autocommit(True)  # its reads, their transaction: one round trip
        details = await document_details(conn, document_id)
    current = [a for a in details.analyses if a.id == details.document.analysis_id]
    body = document_view(details.document) | {
        "history": [
            {
                "at": e.at,
                "from_state": e.from_state,
                "to_state": e.to_state,
                "step": e.step,
                "detail": e.detail,
            }
            for e in details.history
        ],
        "analysis": analysis_view(current[0]) if current else None,
        "analysis_runs": len(details.analyses),
        "case": None if details.case is None else case_view(details.case),
    }
    return json_response(body)


@blueprint.post("/<int:document_id>/retry")
@requires(Role.ANALYST, replies={202: DocumentView}, errors=(409,))
async def retry(document_id: int) -> Response:
    """Restart a failed document at the step it failed in (409 if it is not failed)."""
    settings = current_context().settings
    document = await retry_document(
        current_context().db,
        document_id,
        context=audit_context(),
        max_attempts=settings.ingest_max_attempts,
    )
    return json_response(document_view(document), 202)


class ReanalyzeBody(BaseModel):
    """Optional: another analyzer for this run (admins only)."""

    model_config = ConfigDict(extra="forbid")

    provider: str | None = Field(default=None, max_length=50)
    model: str | None = Field(default=None, min_length=1, max_length=200)


@blueprint.post("/<int:document_id>/reanalyze")
@requires(
    Role.ANALYST,
    body=ReanalyzeBody,
    body_required=False,
    replies={202: DocumentView},
    errors=(409,),
)
async def reanalyze(document_id: int) -> Response:
    """Run analysis and routing again (409 before the document has normalized text).

    An optional JSON body ``{provider, model}`` runs this analysis with another provider
    or model than the configured one; only admins may ask for that.
    """
    context = current_context()
    choice = None
    if await request.get_data():
        body = await json_body(ReanalyzeBody)
        if body.provider is not None or body.model is not None:
            current_principal().require(Role.ADMIN)
            try:
                analyzer_choice_check(context.analysis, body.provider, body.model)
            except ValueError as exc:
                field, _, message = str(exc).partition(": ")
                raise ValidationFailed([{"field": field, "message": message}]) from None
            choice = {k: v for k, v in (("provider", body.provider), ("model", body.model)) if v}
    document = await reanalyze_document(
        context.db,
        document_id,
        context=audit_context(),
        max_attempts=context.settings.ingest_max_attempts,
        analyzer=choice,
    )
    return json_response(document_view(document), 202)


@blueprint.delete("/<int:document_id>")
@requires(Role.ADMIN, replies={204: None}, errors=(409,))
async def delete(document_id: int) -> Response:
    """Delete a document with everything derived from it (409 while a legal hold keeps
    it or its case)."""
    await delete_document(current_context().db, document_id, context=audit_context())
    return no_content()
