"""The OpenAPI 3.1 document, built from the app's own route table and declarations.

Nothing is written by hand twice: paths and methods come from the URL map, summaries
from the view docstrings, who may call from the access declarations, request bodies and
query parameters from the pydantic models the declarations name.
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any

from daemon import __version__
from daemon.api.access import access_of

if TYPE_CHECKING:
    from pydantic import BaseModel
    from quart import Quart

    from daemon.shared.config import Settings

_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
_PARAM_TYPES = {"int": {"type": "integer", "minimum": 0}, None: {"type": "string"}}
_ERRORS = {
    "400": "Malformed request",
    "401": "Missing, invalid, expired or revoked credentials",
    "403": "The caller's role is too low",
    "404": "Not found",
    "409": "Conflicts with the current state",
    "413": "Body too large",
    "415": "Unsupported media type",
    "422": "Invalid fields (see errors)",
    "429": "Throttled (see Retry-After)",
    "503": "Database unavailable (see Retry-After)",
}


def build_document(app: Quart, settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of ``app`` as the given settings configure it."""
    schemas: dict[str, Any] = {"Problem": _PROBLEM}
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        access = access_of(view)
        if view is None or access is None:
            continue
        path = _CONVERTER.sub(r"{\2}", rule.rule)
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": _PARAM_TYPES.get(converter or None, {"type": "string"}),
            }
            for converter, name in _CONVERTER.findall(rule.rule)
        ]
        if access.query is not None:
            parameters += _query_parameters(access.query)
        doc = inspect.getdoc(view) or ""
        summary, _, description = doc.partition("\n")
        public = access.is_public(settings)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation: dict[str, Any] = {
                "operationId": f"{rule.endpoint}.{method.lower()}",
                "summary": summary.strip(),
                "tags": [rule.endpoint.split(".")[0]],
                "responses": {"2XX": {"description": "Success"}} | _error_responses(public),
            }
            if description.strip():
                operation["description"] = description.strip()
            if parameters:
                operation["parameters"] = parameters
            if access.body is not None:
                schemas[access.body.__name__] = _schema(access.body, schemas)
                operation["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{access.body.__name__}"}
                        }
                    },
                }
            if public:
                operation["security"] = []
            else:
                assert access.role is not None
                operation["x-required-role"] = access.role.value
                operation["x-users-only"] = access.users_only
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "triaged",
            "version": __version__,
            "description": "Document triage: ingestion, LLM analysis, cases. Every "
            "operation names the role it needs in x-required-role (admin > analyst > "
            "viewer); send Authorization: Bearer <session token or API key>.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A session token (tgs_...) from POST /api/v1/auth/login "
                    "or an API key (tgd_...).",
                }
            },
        },
        "security": [{"bearer": []}],
    }


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas[name] = definition
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    parameters = []
    for name, field_schema in schema.get("properties", {}).items():
        description = field_schema.pop("description", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": field_schema,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _error_responses(public: bool) -> dict[str, Any]:
    codes = [c for c in _ERRORS if not (public and c in ("401", "403"))]
    ref = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {code: {"description": _ERRORS[code], "content": ref} for code in codes}


_PROBLEM: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "required": ["type", "title", "status"],
}
