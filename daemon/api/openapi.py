"""The OpenAPI 3.1 document, built from the app's own route table and declarations.

Nothing is written by hand twice: paths and methods come from the URL map, summaries
from the view docstrings, who may call from the access declarations, request bodies,
upload forms and query parameters from the pydantic models the routes validate with,
and responses from the replies each route declares plus the error statuses that follow
from its declaration (:func:`error_statuses`). Every error answers
``application/problem+json`` (:mod:`daemon.api.problems`).

The contract tests hold the document to the server: generated requests against the
real daemon, and every response of the test suite checked against it.
"""

from __future__ import annotations

import copy
import inspect
import re
from typing import TYPE_CHECKING, Any

from daemon import __version__
from daemon.api.access import access_of
from daemon.api.problems import PROBLEM_JSON
from daemon.api.schemas.problem import Problem
from daemon.modules.auth import Role
from daemon.shared.pagination import MAX_ID  # every id of the API is a bigint

if TYPE_CHECKING:
    from pydantic import BaseModel
    from quart import Quart

    from daemon.api.access import Access, Reply
    from daemon.shared.config import Settings

_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")

_PARAM_TYPES = {
    "int": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
    None: {"type": "string"},
}
_REF = "#/components/schemas/{model}"
_ERRORS = {
    400: "Malformed request (a body that is not valid JSON)",
    401: "Missing, invalid, expired or revoked credentials",
    403: "The caller's role is too low, or an API key on a route for users only",
    404: "Not found",
    408: "The request body did not arrive within TRIAGED_HTTP_BODY_TIMEOUT_SECONDS",
    409: "Conflicts with the current state",
    413: "Body too large (TRIAGED_MAX_REQUEST_BYTES, or the route's own limit)",
    415: "Unsupported media type (of the body, or of the document)",
    422: "Invalid fields (see errors)",
    429: "Throttled (see Retry-After)",
    503: "Unavailable for now: the database, or room for more request bodies (see Retry-After)",
}
# Headers every error of a status carries (see daemon/api/errors.py).
_ERROR_HEADERS = {401: "WWW-Authenticate", 429: "Retry-After", 503: "Retry-After"}


def error_statuses(access: Access, *, public: bool, path_params: bool) -> frozenset[int]:
    """The error statuses a route answers, from its declaration.

    Every route: 413 (the edge refuses a declared body over the limit before routing).
    A route touching the database (or checking credentials, which does): 503. A
    protected route: 401, and 403 unless any role may call it. A JSON body or upload:
    400, 408, 415, 422, 503. A query model: 422. A path parameter: 404. Plus the route's own
    ``errors`` (409 of a conflict, 429 of login throttling, ...).
    """
    statuses = {413, *access.errors}
    if access.database or not public:
        statuses.add(503)
    if not public:
        statuses.add(401)
        if access.users_only or access.role is not Role.VIEWER:
            statuses.add(403)
    if access.body is not None or access.form is not None:
        # 408: the body did not arrive within the body deadline; 503: the budget of
        # request bodies in flight is spent (both decided by the edge, before the route).
        statuses |= {400, 408, 415, 422, 503}
    if access.query is not None:
        statuses.add(422)
    if path_params:
        statuses.add(404)
    return frozenset(statuses)


def build_document(app: Quart, settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of ``app`` as the given settings configure it.

    Raises:
        ValueError: two different models share a name (the document would be
            ambiguous), or a route declares an error status it also declares a reply for.
    """
    schemas: dict[str, Any] = {}
    _register(Problem, schemas, mode="serialization")
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        access = access_of(view)
        if view is None or access is None:
            continue
        path = _CONVERTER.sub(r"{\2}", rule.rule)
        path_params = _CONVERTER.findall(rule.rule)
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": dict(_PARAM_TYPES.get(converter or None, {"type": "string"})),
            }
            for converter, name in path_params
        ]
        if access.query is not None:
            parameters += _query_parameters(access.query, schemas)
        parameters += [
            {"name": name, "in": "header", "required": True, "description": text,
             "schema": {"type": "string"}}
            for name, text in access.headers.items()
        ]  # fmt: skip
        doc = inspect.getdoc(view) or ""
        summary, _, description = doc.partition("\n")
        public = access.is_public(settings)
        errors = error_statuses(access, public=public, path_params=bool(path_params))
        clash = errors & set(access.replies)
        if clash:
            raise ValueError(f"{rule.rule}: statuses both replies and errors: {sorted(clash)}")
        responses: dict[str, Any] = {
            str(status): _reply(reply, schemas) for status, reply in access.replies.items()
        }
        responses |= {str(status): _error(status) for status in errors}
        responses = dict(sorted(responses.items()))
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation: dict[str, Any] = {
                "operationId": f"{rule.endpoint}.{method.lower()}",
                "summary": summary.strip(),
                "tags": [rule.endpoint.split(".")[0]],
                "responses": responses,
            }
            if description.strip():
                operation["description"] = description.strip()
            if parameters:
                operation["parameters"] = parameters
            body = _request_body(access, schemas)
            if body is not None:
                operation["requestBody"] = body
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
            "viewer); send Authorization: Bearer <session token or API key>. Errors "
            "are RFC 9457 problem details (application/problem+json).",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
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


def _register(model: type[BaseModel], schemas: dict[str, Any], *, mode: str) -> dict[str, Any]:
    """Put ``model`` (and the models it refers to) in ``schemas``; a reference to it."""
    schema = model.model_json_schema(ref_template=_REF, mode=mode)  # type: ignore[arg-type]
    for name, definition in [*schema.pop("$defs", {}).items(), (model.__name__, schema)]:
        if schemas.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas named {name} in the OpenAPI document")
    return {"$ref": _REF.format(model=model.__name__)}


def _reply(reply: Reply, schemas: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": reply.description}
    if reply.media_type:
        schema = (
            _register(reply.model, schemas, mode="serialization")
            if reply.model is not None
            else _UNDESCRIBED.get(reply.media_type, {"type": "string"})
        )
        answer["content"] = {reply.media_type: {"schema": schema}}
    if reply.headers:
        answer["headers"] = {
            name: {"required": True, "schema": {"type": "string"}} for name in reply.headers
        }
    return answer


_UNDESCRIBED = {"application/json": {"type": "object"}}


def _error(status: int) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": _ERRORS.get(status, "Error"),
        "content": {PROBLEM_JSON: {"schema": {"$ref": _REF.format(model="Problem")}}},
    }
    if status in _ERROR_HEADERS:
        answer["headers"] = {
            _ERROR_HEADERS[status]: {"required": True, "schema": {"type": "string"}}
        }
    return answer


def _request_body(access: Access, schemas: dict[str, Any]) -> dict[str, Any] | None:
    content: dict[str, Any] = {}
    if access.body is not None:
        content["application/json"] = {"schema": _register(access.body, schemas, mode="validation")}
    if access.form is not None:
        content["multipart/form-data"] = {"schema": _form_schema(access.form, schemas)}
    if not content:
        return None
    return {"required": access.body_required, "content": content}


def _form_schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """A multipart form: one ``file`` part plus ``model``'s fields (text parts)."""
    schema = model.model_json_schema(ref_template=_REF)
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    properties = {name: _not_null(field) for name, field in schema["properties"].items()}
    return {
        "type": "object",
        "description": schema.get("description", ""),
        "properties": {"file": {"type": "string", "format": "binary"}} | properties,
        "required": ["file"],
        "additionalProperties": False,
    }


def _query_parameters(model: type[BaseModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    for name, definition in schema.pop("$defs", {}).items():
        if schemas.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas named {name} in the OpenAPI document")
    required = set(schema.get("required", []))
    parameters = []
    for name, field_schema in schema.get("properties", {}).items():
        field_schema = _not_null(field_schema)
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


def _not_null(field_schema: dict[str, Any]) -> dict[str, Any]:
    """``field_schema`` without its ``null`` branch: a query parameter or form field is
    left out to be null, never given as ``null``."""
    field_schema = copy.deepcopy(field_schema)
    branches = field_schema.get("anyOf")
    if branches is not None:
        rest = [b for b in branches if b != {"type": "null"}]
        if len(rest) == 1:
            del field_schema["anyOf"]
            field_schema = rest[0] | field_schema
        else:
            field_schema["anyOf"] = rest
    if field_schema.get("default", 0) is None:
        del field_schema["default"]
    return field_schema
