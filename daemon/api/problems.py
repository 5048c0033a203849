"""RFC 9457 problem details: the body of every error response."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from quart import Response

PROBLEM_JSON = "application/problem+json"

# RFC 9110's names where Python 3.11's ``http.HTTPStatus`` still has the older ones:
# one title per status on every route, whichever layer answers.
_RFC_9110_TITLES = {
    413: "Content Too Large",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


def title_for(status: int) -> str:
    """The problem ``title`` of ``status``: its RFC 9110 reason phrase."""
    return _RFC_9110_TITLES.get(status) or HTTPStatus(status).phrase


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """A ``application/problem+json`` response (``type`` is ``about:blank``: the status says it)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if request_id:
        body["request_id"] = request_id
    body.update(extensions)
    response = Response(json.dumps(body), status=status, content_type=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
