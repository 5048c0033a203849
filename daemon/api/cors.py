"""CORS: off unless origins are allowed in the settings. Pure header logic, used by the edge.

The API authenticates with bearer tokens, never cookies, so responses never carry
``Access-Control-Allow-Credentials``. An allowed origin gets its own name echoed back
(never ``*``), with ``Vary: Origin`` so caches keep answers per origin apart. A request
from any other origin gets no CORS header at all: the browser then refuses it, which is
the point. Preflights from allowed origins are answered here, before authentication
(browsers send them without credentials); others get 403.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable

Headers = list[tuple[bytes, bytes]]

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-ID"
EXPOSED_HEADERS = "Location, Retry-After, X-Request-ID, WWW-Authenticate"
PREFLIGHT_MAX_AGE = "600"


@attrs.frozen
class CorsPolicy:
    allowed_origins: frozenset[str]

    @classmethod
    def of(cls, origins: Iterable[str]) -> CorsPolicy:
        return cls(frozenset(origin.lower().rstrip("/") for origin in origins))

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_origins)

    def allows(self, origin: str | None) -> bool:
        return origin is not None and origin.lower() in self.allowed_origins

    def response_headers(self, origin: str | None) -> Headers:
        """Headers added to an actual (non-preflight) response."""
        if not self.enabled:
            return []
        headers: Headers = [(b"vary", b"Origin")]
        if self.allows(origin):
            assert origin is not None
            headers += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
            ]
        return headers

    def preflight(self, origin: str | None) -> tuple[int, Headers]:
        """Status and headers answering a preflight ``OPTIONS`` request."""
        headers: Headers = [(b"vary", b"Origin")]
        if not self.allows(origin):
            return 403, headers
        assert origin is not None
        return 204, [
            *headers,
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
            (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
            (b"access-control-max-age", PREFLIGHT_MAX_AGE.encode()),
        ]
