"""The ingestion module's errors: content that cannot be ingested (permanent), URLs that
cannot be fetched now (transient), and document operations (their place in the tree:
:mod:`daemon.shared.errors`)."""

from __future__ import annotations

from daemon.shared.errors import DaemonError, DocumentError


class IngestionError(DaemonError):
    """The document's content cannot be ingested."""


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


class DocumentNotFound(DocumentError):
    """No such document."""


class InvalidTransition(DocumentError):
    """The document's state does not allow this."""


class IdempotencyConflict(DocumentError):
    """This Idempotency-Key was used with a different request."""


class DocumentTooLarge(DocumentError):
    """The document is larger than this server accepts."""
