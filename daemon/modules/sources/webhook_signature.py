"""The signature of a webhook delivery: HMAC-SHA256 over ``timestamp.body``.

A pure rule (no I/O, no clock of its own): the webhook route reads the headers, this
module says whether they authenticate the body, and why not.

The scheme (like Stripe's and Standard Webhooks')::

    Triaged-Delivery-Id: <the sender's id of this delivery: its idempotency key>
    Triaged-Timestamp:   <Unix seconds when the sender signed>
    Triaged-Signature:   v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

The signed message is the timestamp's decimal digits exactly as sent, one ``.``, then the
raw body bytes. ``Triaged-Signature`` may carry several ``v1=`` values separated by
commas or spaces (a sender rotating its own secret signs with both); one that matches a
valid secret of the source is enough. Comparisons are constant-time
(:func:`hmac.compare_digest`), and every candidate is compared whatever the earlier ones
gave, so the time taken says nothing about which part matched.

A timestamp more than ``tolerance`` seconds away from the receiver's clock (either way)
is refused: a captured delivery cannot be replayed later. Within the window, replays are
caught by the caller, who remembers :func:`message_digest` of every delivery it accepted
for as long as the window lasts; a sender retrying a delivery signs it again with a new
timestamp (the delivery id stays the same, and makes the retry answer as the first).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

DELIVERY_ID_HEADER = "Triaged-Delivery-Id"
TIMESTAMP_HEADER = "Triaged-Timestamp"
SIGNATURE_HEADER = "Triaged-Signature"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300.0

_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,200}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v1=([0-9a-fA-F]{64})")
_MAX_SIGNATURES = 8


class Refusal(enum.Enum):
    """Why a delivery is not authenticated (all answer 401; the reason is logged)."""

    MISSING_HEADERS = "missing_headers"
    MALFORMED_DELIVERY_ID = "malformed_delivery_id"
    MALFORMED_TIMESTAMP = "malformed_timestamp"
    MALFORMED_SIGNATURE = "malformed_signature"
    STALE_TIMESTAMP = "stale_timestamp"
    BAD_SIGNATURE = "bad_signature"
    REPLAYED = "replayed"


@attrs.frozen(kw_only=True)
class Verified:
    """A delivery whose signature matched one of the source's secrets."""

    delivery_id: str
    timestamp: int
    digest: bytes
    """:func:`message_digest` of the signed message: the replay key."""


@attrs.frozen(kw_only=True)
class Refused:
    reason: Refusal


def signed_message(timestamp: str, body: bytes) -> bytes:
    """What the signature covers: ``<timestamp>.<body>``."""
    return timestamp.encode("ascii") + b"." + body


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``Triaged-Signature`` value a sender sends (``v1=<hex>``)."""
    mac = hmac.new(secret.encode("utf-8"), signed_message(timestamp, body), hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def message_digest(timestamp: str, body: bytes) -> bytes:
    """SHA-256 of the signed message: equal for a replay of the same signed delivery."""
    return hashlib.sha256(signed_message(timestamp, body)).digest()


def _candidates(header: str) -> list[bytes] | None:
    parts = [part for part in re.split(r"[,\s]+", header.strip()) if part]
    if not parts or len(parts) > _MAX_SIGNATURES:
        return None
    found = []
    for part in parts:
        match = _SIGNATURE.fullmatch(part)
        if match is None:
            if part.startswith(f"{SIGNATURE_VERSION}="):
                return None  # a v1 that is not 64 hex digits: malformed
            continue  # another scheme version: ignored, as Standard Webhooks says
        found.append(bytes.fromhex(match.group(1)))
    return found or None


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Iterable[str],
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> Verified | Refused:
    """Whether ``headers`` authenticate ``body`` with one of ``secrets`` at time ``now``.

    ``headers`` is looked up by the exact names above (the caller's mapping is expected
    to be case-insensitive, as HTTP headers are). ``secrets`` are the source's valid
    secrets (the current one and, during a rotation's overlap, the previous one); no
    secret at all refuses every delivery. Pure: the replay check is the caller's.
    """
    delivery_id = headers.get(DELIVERY_ID_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    if delivery_id is None or timestamp is None or signature is None:
        return Refused(reason=Refusal.MISSING_HEADERS)
    if not _DELIVERY_ID.fullmatch(delivery_id):
        return Refused(reason=Refusal.MALFORMED_DELIVERY_ID)
    if not _TIMESTAMP.fullmatch(timestamp):
        return Refused(reason=Refusal.MALFORMED_TIMESTAMP)
    candidates = _candidates(signature)
    if candidates is None:
        return Refused(reason=Refusal.MALFORMED_SIGNATURE)
    if abs(now - int(timestamp)) > tolerance:
        return Refused(reason=Refusal.STALE_TIMESTAMP)
    message = signed_message(timestamp, body)
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
        for candidate in candidates:
            # No early exit: every pair is compared, in constant time each.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        return Refused(reason=Refusal.BAD_SIGNATURE)
    return Verified(
        delivery_id=delivery_id,
        timestamp=int(timestamp),
        digest=hashlib.sha256(message).digest(),
    )


@attrs.frozen(kw_only=True)
class WebhookSecrets:
    """A webhook source's secrets: the current one and, until ``previous_until`` (a Unix
    time), the one it replaced. Stored in the source's configuration, never shown."""

    current: str
    previous: str | None = None
    previous_until: float | None = None

    def valid_at(self, now: float) -> tuple[str, ...]:
        """The secrets a delivery may be signed with at ``now``: the current one, and the
        previous one while the overlap lasts."""
        if (
            self.previous is not None
            and self.previous_until is not None
            and now < self.previous_until
        ):
            return (self.current, self.previous)
        return (self.current,)
