"""The one error tree of triaged.

    DaemonError                     anything triaged raises on purpose
    ├── ConfigError                 settings are missing or malformed (exit status 2)
    ├── DatabaseError               the database cannot be reached or misbehaves
    │   ├── PoolTimeout             no connection could be had within the acquire timeout
    │   └── PoolClosed              the pool was closed while a caller wanted a connection
    ├── EmbeddedDatabaseError       the embedded PostgreSQL could not be started or stopped
    ├── MigrationError              migrations cannot be applied
    │   └── ChecksumMismatch        an applied migration file was changed afterwards
    ├── AuthError                   authentication, users, sessions and API keys
    │   ├── InvalidCredentials      login refused: unknown email, wrong password, disabled
    │   ├── Unauthenticated         missing, malformed, expired or revoked token or key
    │   ├── LoginThrottled          too many failed logins; carries ``retry_after`` seconds
    │   ├── PermissionDenied        the principal's role is too low
    │   ├── InvalidAccountData      a user or API key field is invalid (carries ``field``)
    │   │   └── WeakPassword        the password does not meet the policy
    │   ├── UserNotFound            no such user
    │   ├── ApiKeyNotFound          no such API key
    │   ├── DuplicateEmail          a user with that email (any case) exists
    │   └── LastAdmin               the change would leave no active admin
    ├── IngestionError              a document's content cannot be ingested (permanent)
    │   ├── EmptyContent            the document has no bytes at all
    │   ├── UnsupportedContent      its media type (declared or detected) is not extracted
    │   ├── CorruptContent          the bytes do not parse as their type (or are not text)
    │   ├── EncryptedContent        the document needs a password to be read
    │   ├── ContentTooLarge         a fetched body is larger than the fetch size cap
    │   ├── FetchRefused            a url refused: scheme, userinfo, blocked address, redirects
    │   └── FetchRejected           the server answered a permanent 4xx (carries ``status``)
    ├── FetchUnavailable            a url cannot be fetched now (transient; ``retry_after``)
    ├── AnalysisError               an analyzer provider could not produce a valid analysis
    │   ├── AnalysisFailed          the model's output stays invalid after the repair round
    │   │                           (permanent; carries ``raw_output`` and ``errors``)
    │   └── AnalyzerUnavailable     the model server cannot be used now (transient; carries
    │       │                       ``reason`` and ``retry_after``): 5xx, timeouts, network
    │       │                       and protocol failures, 401/403/404, circuit open
    │       └── AnalyzerRateLimited the model server answered 429
    ├── DocumentError               document and case operations
    │   ├── DocumentNotFound        no such document
    │   ├── CaseNotFound            no such case
    │   ├── InvalidTransition       the document's state does not allow this step or action
    │   ├── IdempotencyConflict     an Idempotency-Key reused with a different request
    │   └── DocumentTooLarge        the document is larger than TRIAGED_MAX_DOCUMENT_BYTES
    └── InputError                  a client sent something we cannot accept
        ├── MalformedInput          the body cannot be parsed at all
        ├── UnsupportedMediaType    the body is of a type the endpoint does not take
        ├── BodyTooLarge            the body is larger than the endpoint takes
        └── ValidationFailed        the body parses but its fields are invalid

Every ``IngestionError`` is permanent: the same bytes fail the same way on every
attempt, so the pipeline fails the document at once instead of retrying. Its transient
counterpart for fetched documents is ``FetchUnavailable`` (timeouts, network and DNS
failures, HTTP 408, 429 and 5xx): the fetch step retries it with backoff.

Analysis errors: ``AnalysisFailed`` (the model, even after being shown its mistakes,
answered something invalid) spends an attempt and is retried, since a model's answers
vary; out of attempts, the document fails with the raw output kept.
``AnalyzerUnavailable`` is transient and not the document's fault: the job is
rescheduled without spending an attempt.

Each module adds its own leaves under the closest branch. The class docstring is the
default message. HTTP statuses are chosen in one place only, ``daemon/api/errors.py``.
"""

from __future__ import annotations


def describe_cause(exc: BaseException) -> str:
    """The first non-empty message along ``exc``'s causes (else its type's name): HTTP
    clients often wrap a silent ``trio.BrokenResourceError`` whose cause (a TLS
    certificate error, a refused connection) says why."""
    seen: BaseException | None = exc
    while seen is not None:
        if str(seen):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


class DaemonError(Exception):
    """An error in triaged."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(DaemonError):
    """The configuration is invalid."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class DatabaseError(DaemonError):
    """The database is unavailable."""


class PoolTimeout(DatabaseError):
    """No database connection became available in time."""


class PoolClosed(DatabaseError):
    """The database pool is closed."""


class EmbeddedDatabaseError(DaemonError):
    """The embedded PostgreSQL server could not be managed."""


class MigrationError(DaemonError):
    """Database migrations cannot be applied."""


class ChecksumMismatch(MigrationError):
    """An already-applied migration file has been changed."""


class InputError(DaemonError):
    """The request cannot be accepted."""


class MalformedInput(InputError):
    """The request body is not well-formed."""


class UnsupportedMediaType(InputError):
    """The request body has an unsupported media type."""


class BodyTooLarge(InputError):
    """The request body is too large."""


class ValidationFailed(InputError):
    """The request has invalid fields."""

    def __init__(self, errors: list[dict[str, str]], message: str | None = None) -> None:
        self.errors = errors
        super().__init__(message)


class AuthError(DaemonError):
    """Authentication or account management failed."""


class InvalidCredentials(AuthError):
    """Invalid email or password."""


class Unauthenticated(AuthError):
    """Missing, invalid, expired or revoked credentials."""


class LoginThrottled(AuthError):
    """Too many failed logins; try again later."""

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message or f"too many failed logins; try again in {retry_after} s")


class PermissionDenied(AuthError):
    """Your role does not allow this."""


class InvalidAccountData(AuthError):
    """A field of the user or API key is invalid."""

    def __init__(self, field: str, message: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class WeakPassword(InvalidAccountData):
    """The password does not meet the password policy."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__("password", message)


class UserNotFound(AuthError):
    """No such user."""


class ApiKeyNotFound(AuthError):
    """No such API key."""


class DuplicateEmail(AuthError):
    """A user with this email already exists."""


class LastAdmin(AuthError):
    """The last active admin cannot be demoted, disabled or deleted."""


class IngestionError(DaemonError):
    """The document's content cannot be ingested."""

    # Permanent, as is every leaf: the same bytes fail the same way on every attempt, so
    # the pipeline step fails the document at once (no retries) with this message as the
    # reason. (The docstring stays one line: it is the default message.)


class EmptyContent(IngestionError):
    """The document is empty (0 bytes)."""


class UnsupportedContent(IngestionError):
    """The document's media type is not supported."""


class CorruptContent(IngestionError):
    """The document is corrupt: its content cannot be parsed as its media type."""


class EncryptedContent(IngestionError):
    """The document is encrypted and cannot be read without a password."""


class ContentTooLarge(IngestionError):
    """The fetched document is larger than the size limit."""

    def __init__(self, limit: int, message: str | None = None) -> None:
        self.limit = limit
        super().__init__(message or f"the document is larger than {limit} bytes")


class FetchRefused(IngestionError):
    """The document URL is refused."""

    # Scheme, userinfo, a blocked address class (SSRF guard) or too many redirects:
    # a policy decision, the same on every attempt.


class FetchRejected(IngestionError):
    """The server refused the document URL."""

    # A 4xx other than 408 and 429 (or a response that is not a document at all): the
    # URL is wrong or forbidden to us, and asking again will not change that.

    def __init__(self, status: int, message: str | None = None) -> None:
        self.status = status
        super().__init__(message or f"the server answered HTTP {status}")


class FetchUnavailable(DaemonError):
    """The document URL cannot be fetched now."""

    # Transient, unlike IngestionError: a timeout, a network or DNS failure, or HTTP 408,
    # 429 or 5xx. ``retry_after`` is the server's Retry-After in seconds, if it sent one.

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class AnalysisError(DaemonError):
    """The document could not be analysed."""


class AnalysisFailed(AnalysisError):
    """The model's answer is not a valid analysis, even after a repair round."""

    # The pipeline retries it like a transient error, spending an attempt (a model's
    # answers vary); when attempts run out the document fails with the raw output in its
    # error. ``raw_output`` is the model's last answer as received (for the operator
    # tuning prompts), ``errors`` what was wrong with it, one readable line each.

    def __init__(self, message: str | None = None, *, raw_output: str, errors: list[str]) -> None:
        self.raw_output = raw_output
        self.errors = errors
        super().__init__(message)


class AnalyzerUnavailable(AnalysisError):
    """The analyzer's model server cannot be used now."""

    # Transient and not the document's fault: the pipeline reschedules the job without
    # spending an attempt, after ``retry_after`` seconds when known (Retry-After, or the
    # time until the circuit breaker's next probe). ``reason`` is a short stable word
    # for logs, metrics and /readyz: "server_error", "timeout", "connection",
    # "protocol", "misconfigured" (401, 403, 404: the operator must act), "rate_limited"
    # or "circuit_open".

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: str = "unavailable",
        retry_after: float | None = None,
    ) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(message)


class AnalyzerRateLimited(AnalyzerUnavailable):
    """The analyzer's model server asks us to slow down (HTTP 429)."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message, reason="rate_limited", retry_after=retry_after)


class DocumentError(DaemonError):
    """The document operation failed."""


class DocumentNotFound(DocumentError):
    """No such document."""


class CaseNotFound(DocumentError):
    """No such case."""


class InvalidTransition(DocumentError):
    """The document's state does not allow this."""


class IdempotencyConflict(DocumentError):
    """This Idempotency-Key was used with a different request."""


class DocumentTooLarge(DocumentError):
    """The document is larger than this server accepts."""
