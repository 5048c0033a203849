"""``POST /api/v1/sources/{id}/webhook``: a webhook source's deliveries.

Public in the access sense (no bearer token, no API key): a delivery is authenticated by
its HMAC-SHA256 signature with the source's secret (:mod:`daemon.modules.sources.webhook`),
checked over the raw body before anything of it is parsed. Every refusal of the
signature answers the same 401 (the reason is in the log, never the signature).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, request

from daemon.api.access import Reply, public
from daemon.api.authn import audit_context
from daemon.api.body import json_model
from daemon.api.context import current_context
from daemon.api.responses import json_response
from daemon.api.schemas.documents import DocumentReceipt
from daemon.modules.ingestion import NewDocument
from daemon.modules.sources import authenticate_delivery, receive_delivery
from daemon.shared.errors import BodyTooLarge

blueprint = Blueprint("source_webhooks", __name__, url_prefix="/api/v1/sources")

DEFAULT_CONTENT_TYPE = "text/plain; charset=utf-8"

_CONTENT_OR_URL = [
    {
        "required": ["content"],
        "properties": {"content": {"type": "string"}, "url": {"type": "null"}},
    },
    {"required": ["url"], "properties": {"url": {"type": "string"}, "content": {"type": "null"}}},
]


class WebhookDocument(BaseModel):
    """A delivery as JSON (``Content-Type: application/json``): ``content`` (text) or
    ``url`` (fetched by the pipeline), exactly one. Any other content type: the raw body
    is the document, of that media type."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": _CONTENT_OR_URL})

    title: str = Field(default="", max_length=1000)
    content: str | None = None
    url: str | None = Field(default=None, max_length=4000)
    media_type: str | None = Field(
        default=None, max_length=200, description="of content; default text/plain"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)


@blueprint.post("/<int:source_id>/webhook")
@public(
    body=WebhookDocument,
    replies={
        202: Reply(
            model=DocumentReceipt,
            description="Accepted (with a Location naming the document, unless a resent"
            " delivery's document was purged since by retention)",
        )
    },
    errors=(401, 409),
    signed=True,
)
async def receive(source_id: int) -> Response:
    """Receive a signed delivery (headers ``Triaged-Delivery-Id``, ``Triaged-Timestamp``,
    ``Triaged-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">``).

    Answers 202 with the document's receipt and its ``Location``; a retried delivery
    (same delivery id, signed again, or the very same request sent again) answers the same
    receipt with ``Idempotent-Replayed: true`` (without ``Location`` if the retention
    purge deleted the document since). 401: the signature, timestamp or delivery id is
    refused, or the signature was replayed under another delivery id (nothing is
    created); 409: the source is disabled, or the delivery id came with another body.
    """
    context = current_context()
    settings = context.settings
    if (request.content_length or 0) > settings.max_request_bytes:
        raise BodyTooLarge(f"this body may have at most {settings.max_request_bytes} bytes")
    body = bytes(await request.body)
    if len(body) > settings.max_request_bytes:
        raise BodyTooLarge(f"this body may have at most {settings.max_request_bytes} bytes")
    delivery = await authenticate_delivery(
        context.db, source_id, request.headers, body, cpu=context.parts.cpu
    )
    if request.mimetype == "application/json":
        document = await json_model(body, WebhookDocument)
        new = NewDocument(
            title=document.title,
            content=None if document.content is None else document.content.encode("utf-8"),
            url=document.url,
            media_type=document.media_type
            or (DEFAULT_CONTENT_TYPE if document.content is not None else None),
            metadata=document.metadata,
        )
    else:
        new = NewDocument(content=body, media_type=request.content_type or None)
    answer = await receive_delivery(
        context.db,
        delivery,
        new,
        context=audit_context(),
        max_bytes=settings.max_document_bytes,
        max_attempts=settings.ingest_max_attempts,
    )
    receipt = answer.receipt
    headers: dict[str, str] = {}
    if answer.document_kept:  # purged since: no Location naming a document not there
        headers["Location"] = f"/api/v1/documents/{receipt.id}"
    if receipt.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(receipt.as_json(), 202, headers=headers)
