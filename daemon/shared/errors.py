"""The one error tree of triaged.

    DaemonError                     anything triaged raises on purpose
    ├── ConfigError                 settings are missing or malformed (exit status 2)
    ├── DatabaseError               the database cannot be reached or misbehaves
    │   ├── PoolTimeout             no connection could be had within the acquire timeout
    │   └── PoolClosed              the pool was closed while a caller wanted a connection
    ├── EmbeddedDatabaseError       the embedded PostgreSQL could not be started or stopped
    ├── CpuWorkerLost               a CPU worker process died during a call (killed, OOM)
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
    │   ├── InvalidCaseTransition   the case's state does not allow the action (``status``)
    │   ├── StaleCaseVersion        If-Match names another version of the case
    │   ├── CaseVersionRequired     a case change without If-Match
    │   ├── InvalidTransition       the document's state does not allow this step or action
    │   ├── IdempotencyConflict     an Idempotency-Key reused with a different request
    │   └── DocumentTooLarge        the document is larger than TRIAGED_MAX_DOCUMENT_BYTES
    ├── SourceError                 source operations (daemon/modules/sources/errors.py)
    │   ├── SourceNotFound          no such source (or a deleted one)
    │   ├── DuplicateSourceName     a source with that name exists
    │   ├── WebhookRefused          a delivery's signature, timestamp or delivery id is bad,
    │   │                           or its signature was accepted before (a replay)
    │   ├── DeliveryConflict        a delivery id sent again with a different body
    │   ├── SourceDisabled          a disabled source was sent a delivery
    │   ├── DirectoryRefused        a directory source's path is not under an allowed root
    │   └── SourceNotPollable       poll asked of a push, built-in or deleted source
    ├── ExportsBusy                 every CSV export slot of the process is taken (carries
    │                               ``retry_after``)
    ├── QueueError                  the job queue engine refuses an operation
    │   ├── JobNotFound             no such job
    │   ├── InvalidJobState         the job's state does not allow the operation
    │   ├── InvalidSchedule         a schedule definition is invalid
    │   └── ScheduleNotFound        no such schedule
    ├── RetentionError              a retention operation was refused
    │   ├── HoldNotFound            no such legal hold
    │   ├── HoldAlreadyReleased     the legal hold is already released
    │   ├── UnderLegalHold          the document or case is held: it cannot be deleted
    │   └── BatchOutOfTime          a one-row purge batch ran out of time
    ├── NotificationError           notification channels and deliveries
    │   ├── ChannelNotFound         no such notification channel
    │   ├── DuplicateChannel        a channel with that name exists
    │   └── DeliveryFailed          one delivery attempt failed (transient: retried)
    └── InputError                  a client sent something we cannot accept
        ├── MalformedInput          the body cannot be parsed at all
        ├── UnsupportedMediaType    the body is of a type the endpoint does not take
        ├── BodyTooLarge            the body is larger than the endpoint takes
        └── ValidationFailed        the body parses but its fields are invalid

Where each class is defined: here, the branches several packages share (``DaemonError``,
``ConfigError``, ``CpuWorkerLost``, ``DatabaseError`` and its leaves, ``EmbeddedDatabaseError``,
``MigrationError``, ``ChecksumMismatch``, ``DocumentError``, ``InputError`` and its
leaves); everything else in the module that raises it, imported from that module's
package face: ``AuthError``'s branch in ``daemon/modules/auth/errors.py``;
``IngestionError``'s branch, ``FetchUnavailable`` and the document leaves of
``DocumentError`` in ``daemon/modules/ingestion/errors.py``; ``AnalysisError``'s branch in
``daemon/modules/analysis/errors.py``; ``CaseNotFound`` and the other case leaves in
``daemon/modules/cases/errors.py``; ``ExportsBusy`` in
``daemon/modules/exports/errors.py``; ``RetentionError``'s branch in
``daemon/modules/retention/errors.py``; ``NotificationError``'s branch in
``daemon/modules/notifications/errors.py``; ``QueueError``'s branch in ``daemon/queue/jobs.py`` and
``daemon/queue/schedule_timing.py``. A test keeps this tree and the classes in step.

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

from typing import Any


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

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries pickled (the CPU worker processes hand them
        # back): rebuilt without ``__init__``, whose signature differs between subclasses.
        return (_restore_error, (type(self), self.args, dict(self.__dict__)))


def _restore_error(cls: type[DaemonError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class CpuWorkerLost(DaemonError):
    """A CPU worker process died during the call (killed, out of memory); the call's work
    is lost, the next call gets a new worker. Transient: retrying may succeed."""


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

    # Permanent, as is every leaf: the same bytes fail the same way on every attempt, so
    # the pipeline step fails the document at once (no retries) with this message as the
    # reason. (The docstring stays one line: it is the default message.)

    # Scheme, userinfo, a blocked address class (SSRF guard) or too many redirects:
    # a policy decision, the same on every attempt.


class DocumentError(DaemonError):
    """The document operation failed."""
