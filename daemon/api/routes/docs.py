"""``/openapi.json`` and ``/docs``: the API described by its own route table.

``/docs`` is a self-contained HTML page (no scripts, no external resources) under a
Content-Security-Policy that allows nothing but its one inline stylesheet, by hash.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any

from quart import Blueprint, Response, current_app

from daemon.api.access import Reply, public
from daemon.api.context import current_context
from daemon.api.openapi import build_document
from daemon.api.responses import json_response

blueprint = Blueprint("docs", __name__)

_STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
    "code{background:#f3f3f3;padding:0 .2rem}"
    "h2{border-bottom:1px solid #ddd;margin-top:2rem}"
    ".op{margin:.6rem 0}.m{display:inline-block;width:4.5rem;font-weight:bold}"
    ".role{color:#555;font-size:.9em}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
DOCS_CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


@blueprint.get("/openapi.json")
@public(replies={200: Reply(description="This document")}, database=False)
async def openapi() -> Response:
    """The OpenAPI 3.1 document of this server."""
    return json_response(build_document(current_app, current_context().settings))


@blueprint.get("/docs")
@public(replies={200: Reply(media_type="text/html")}, database=False)
async def docs() -> Response:
    """A readable reference of every operation, generated from the OpenAPI document."""
    document = build_document(current_app, current_context().settings)
    response = Response(_render(document), content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


def _render(document: dict[str, Any]) -> str:
    by_tag: dict[str, list[str]] = {}
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            role = op.get("x-required-role")
            who = "public" if op.get("security") == [] else f"role: {role}"
            if op.get("x-users-only"):
                who += ", users only"
            by_tag.setdefault(op["tags"][0], []).append(
                f'<div class="op"><span class="m">{escape(method.upper())}</span>'
                f"<code>{escape(path)}</code> {escape(op['summary'])} "
                f'<span class="role">({escape(who)})</span></div>'
            )
    sections = "".join(
        f"<h2>{escape(tag)}</h2>{''.join(ops)}" for tag, ops in sorted(by_tag.items())
    )
    info = document["info"]
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(info['title'])} API</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(info['title'])} {escape(info['version'])}</h1>"
        f"<p>{escape(info['description'])}</p>"
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>'
        f"{sections}</body></html>"
    )
