"""JSON responses with the API's conventions: times in ISO 8601 UTC, lists as
``{"items": [...], "next_cursor": ...}``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from quart import Response


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(
    body: Any, status: int = 200, *, headers: dict[str, str] | None = None
) -> Response:
    response = Response(
        json.dumps(body, default=_default, ensure_ascii=False),
        status=status,
        content_type="application/json",
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def page(items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": next_cursor}


def page_response(items: list[str], next_cursor: str | None) -> Response:
    """A 200 with ``{"items": [...], "next_cursor": ...}`` from items already encoded as
    JSON (by the database: see ``list_document_views``)."""
    body = '{"items":[' + ",".join(items) + '],"next_cursor":' + json.dumps(next_cursor) + "}"
    return Response(body, status=200, content_type="application/json")


def no_content() -> Response:
    """A 204: no body, hence no ``Content-Type`` (Quart would default to text/html)."""
    response = Response(b"", status=204)
    del response.headers["Content-Type"]
    return response
