"""The one place where errors become HTTP statuses.

Domain code raises from the error tree in :mod:`daemon.shared.errors`; this module maps
each branch to a status and an RFC 9457 body. Anything unexpected is a 500 whose body
carries the request id and nothing of the internals; the traceback goes to the log.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException

from daemon.api.problems import problem
from daemon.shared.errors import (
    DaemonError,
    DatabaseError,
    InputError,
    MalformedInput,
    UnsupportedMediaType,
    ValidationFailed,
)
from daemon.shared.logs import request_id_var

if TYPE_CHECKING:
    from quart import Quart, Response

log = logging.getLogger("triaged.api")

_STATUS_BY_ERROR: list[tuple[type[DaemonError], int]] = [
    (MalformedInput, 400),
    (UnsupportedMediaType, 415),
    (ValidationFailed, 422),
    (InputError, 400),
    (DatabaseError, 503),
]


def status_for(error: DaemonError) -> int:
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(HTTPException)
    async def http_exception(error: HTTPException) -> Response:
        status = error.code or 500
        headers = {}
        if status == 405 and getattr(error, "valid_methods", None):
            headers["Allow"] = ", ".join(sorted(error.valid_methods or []))
        return problem(
            status,
            HTTPStatus(status).phrase,
            _detail_for(status, error),
            request_id=request_id_var.get(),
            headers=headers,
        )

    @app.errorhandler(DaemonError)
    async def daemon_error(error: DaemonError) -> Response:
        status = status_for(error)
        if status >= 500:
            log.error("request failed: %s", error.message, extra={"action": "http.error"})
        extensions = {}
        if isinstance(error, ValidationFailed):
            extensions["errors"] = error.errors
        headers = {"Retry-After": "5"} if status == 503 else None
        return problem(
            status,
            HTTPStatus(status).phrase,
            error.message if status < 500 else "The service is temporarily unavailable.",
            request_id=request_id_var.get(),
            headers=headers,
            **extensions,
        )

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unhandled error while serving a request", extra={"action": "http.crash"})
        return problem(
            500,
            "Internal Server Error",
            "The server failed to handle this request; its log has the details.",
            request_id=request_id_var.get(),
        )


def _detail_for(status: int, error: HTTPException) -> str:
    if status == 404:
        return "No resource at this path."
    if status == 405:
        return "This method is not allowed on this resource."
    if status == 413:
        return "The request body is larger than this server accepts."
    description = error.description or ""
    # werkzeug descriptions are generic English sentences, never internals.
    return description
