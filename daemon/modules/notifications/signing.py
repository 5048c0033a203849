"""Webhook signatures in the Standard Webhooks style.

Every webhook request carries three headers:

- ``webhook-id``: the delivery's id, the same on every retry of that delivery (a
  receiver deduplicates on it);
- ``webhook-timestamp``: seconds since the epoch when this attempt was signed;
- ``webhook-signature``: ``v1,`` then the base64 of HMAC-SHA256, keyed with the
  channel's secret (its UTF-8 bytes), over ``{webhook-id}.{webhook-timestamp}.{body}``
  (the body exactly as sent).

A receiver recomputes the HMAC over the raw body, compares in constant time
(:func:`verify`), and rejects a timestamp too far from its clock (replays).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

DEFAULT_TOLERANCE_SECONDS = 300


def signature(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value (``v1,<base64>``)."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    secret: str, delivery_id: str, body: bytes, *, now: float | None = None
) -> dict[str, str]:
    """The three signature headers for one attempt."""
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, delivery_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: dict[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True when ``headers`` (lower-case names) sign ``body`` with ``secret`` and the
    timestamp is within ``tolerance`` seconds of ``now``. What a receiver runs."""
    try:
        delivery_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        offered = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, delivery_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)
