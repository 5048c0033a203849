"""The one place where errors become HTTP statuses.

Domain code raises from the error tree in :mod:`daemon.shared.errors`; this module maps
each branch to a status and an RFC 9457 body. Anything unexpected is a 500 whose body
carries the request id and nothing of the internals; the traceback goes to the log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import psycopg
from quart import request
from werkzeug.exceptions import HTTPException

from daemon.api.problems import problem, title_for
from daemon.modules.auth import (
    ApiKeyNotFound,
    AuthError,
    DuplicateEmail,
    InvalidAccountData,
    InvalidCredentials,
    LastAdmin,
    LoginThrottled,
    PermissionDenied,
    Unauthenticated,
    UserNotFound,
)
from daemon.modules.cases import (
    CaseNotFound,
    CaseVersionRequired,
    InvalidCaseTransition,
    StaleCaseVersion,
)
from daemon.modules.exports import ExportsBusy
from daemon.modules.ingestion import (
    DocumentNotFound,
    DocumentTooLarge,
    IdempotencyConflict,
    InvalidTransition,
)
from daemon.modules.notifications import ChannelNotFound, DuplicateChannel, NotificationError
from daemon.modules.retention import HoldAlreadyReleased, HoldNotFound, UnderLegalHold
from daemon.modules.sources import (
    DeliveryConflict,
    DuplicateSourceName,
    SourceDisabled,
    SourceError,
    SourceNotFound,
    SourceNotPollable,
    WebhookRefused,
)
from daemon.shared.errors import (
    BodyTooLarge,
    DaemonError,
    DatabaseError,
    DocumentError,
    InputError,
    MalformedInput,
    UnsupportedMediaType,
    ValidationFailed,
)
from daemon.shared.logs import request_id_var

if TYPE_CHECKING:
    from quart import Quart, Response

log = logging.getLogger("triaged.api")

# First match wins: leaves before their branch.
_STATUS_BY_ERROR: list[tuple[type[DaemonError], int]] = [
    (WebhookRefused, 401),
    (DeliveryConflict, 409),
    (SourceDisabled, 409),
    (InvalidCredentials, 401),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (UserNotFound, 404),
    (ApiKeyNotFound, 404),
    (DuplicateEmail, 409),
    (LastAdmin, 409),
    (InvalidAccountData, 422),
    (LoginThrottled, 429),
    (AuthError, 400),
    (DocumentNotFound, 404),
    (CaseNotFound, 404),
    (InvalidCaseTransition, 409),
    (StaleCaseVersion, 412),
    (CaseVersionRequired, 428),
    (InvalidTransition, 409),
    (IdempotencyConflict, 422),
    (DocumentTooLarge, 413),
    (DocumentError, 400),
    (SourceNotFound, 404),
    (DuplicateSourceName, 409),
    (SourceNotPollable, 409),
    (SourceError, 400),
    (MalformedInput, 400),
    (BodyTooLarge, 413),
    (UnsupportedMediaType, 415),
    (ValidationFailed, 422),
    (InputError, 400),
    (DatabaseError, 503),
    (ExportsBusy, 503),
    (HoldNotFound, 404),
    (HoldAlreadyReleased, 409),
    (UnderLegalHold, 409),
    (ChannelNotFound, 404),
    (DuplicateChannel, 409),
    (NotificationError, 400),
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
            title_for(status),
            _detail_for(status, error),
            request_id=request_id_var.get(),
            headers=headers,
        )

    @app.errorhandler(DaemonError)
    async def daemon_error(error: DaemonError) -> Response:
        status = status_for(error)
        if status >= 500:
            log.error("request failed: %s", error.message, extra={"action": "http.error"})
        extensions: dict[str, object] = {}
        if isinstance(error, ValidationFailed):
            extensions["errors"] = error.errors
        elif isinstance(error, InvalidAccountData):
            extensions["errors"] = [{"field": error.field, "message": error.message}]
        elif isinstance(error, InvalidCaseTransition):
            extensions["case_status"] = error.status
        elif isinstance(error, StaleCaseVersion):
            extensions["version"] = error.version
        return problem(
            status,
            title_for(status),
            error.message if status < 500 else "The service is temporarily unavailable.",
            request_id=request_id_var.get(),
            headers=_headers_for(error, status),
            **extensions,
        )

    @app.errorhandler(psycopg.DataError)
    async def data_error(error: psycopg.DataError) -> Response:
        # A value PostgreSQL cannot store (out of range, NUL character) that got past the
        # request models: the client's input, not a server fault. Logged, so a genuine
        # bug that shows up this way is seen.
        log.warning("refused a value the database cannot store: %s", error,
                    extra={"action": "http.data_error"})  # fmt: skip
        return problem(
            422,
            title_for(422),
            "A value is out of range or contains a character the database cannot store.",
            request_id=request_id_var.get(),
        )

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unhandled error while serving a request", extra={"action": "http.crash"})
        return problem(
            500,
            title_for(500),
            "The server failed to handle this request; its log has the details.",
            request_id=request_id_var.get(),
        )


def _headers_for(error: DaemonError, status: int) -> dict[str, str]:
    if isinstance(error, WebhookRefused):
        return {"WWW-Authenticate": 'Triaged-Signature realm="triaged"'}
    if status == 401:
        # RFC 6750: say which scheme, and whether presented credentials were bad.
        challenge = 'Bearer realm="triaged"'
        if isinstance(error, Unauthenticated) and request.headers.get("Authorization"):
            challenge += ', error="invalid_token"'
        return {"WWW-Authenticate": challenge}
    if isinstance(error, LoginThrottled | ExportsBusy):
        return {"Retry-After": str(error.retry_after)}
    if status == 503:
        return {"Retry-After": "5"}
    return {}


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
