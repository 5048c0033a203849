"""The webhook signature rule: HMAC-SHA256 over ``timestamp.body``, tolerance, rotation."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from daemon.modules.sources.webhook_signature import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Refusal,
    Refused,
    Verified,
    WebhookSecrets,
    message_digest,
    sign,
    verify,
)

NOW = 1_700_000_000.0
BODY = b'{"title": "hello", "content": "world"}'


def headers(secret: str = "s3cret", *, timestamp: int = int(NOW), body: bytes = BODY) -> dict:
    return {
        DELIVERY_ID_HEADER: "delivery-1",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, str(timestamp), body),
    }


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    # What a sender computes with any HMAC library (the README shows openssl).
    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign("s3cret", "1700000000", BODY) == f"v1={expected}"


def test_a_valid_delivery_is_verified_with_its_replay_key():
    result = verify(headers(), BODY, secrets=["s3cret"], now=NOW)
    assert isinstance(result, Verified)
    assert result.delivery_id == "delivery-1"
    assert result.timestamp == int(NOW)
    assert result.digest == message_digest(str(int(NOW)), BODY)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"secret": "wrong"}, Refusal.BAD_SIGNATURE),
        ({"body": b"tampered"}, Refusal.BAD_SIGNATURE),
        ({"timestamp": int(NOW) - 301}, Refusal.STALE_TIMESTAMP),
        ({"timestamp": int(NOW) + 301}, Refusal.STALE_TIMESTAMP),
    ],
)
def test_refusals(change, reason):
    sent = headers(
        change.get("secret", "s3cret"),
        timestamp=change.get("timestamp", int(NOW)),
        body=change.get("body", BODY),
    )
    assert verify(sent, BODY, secrets=["s3cret"], now=NOW) == Refused(reason=reason)


def test_the_tolerance_window_is_inclusive_and_configurable():
    edge = headers(timestamp=int(NOW) - 300)
    assert isinstance(verify(edge, BODY, secrets=["s3cret"], now=NOW), Verified)
    assert verify(edge, BODY, secrets=["s3cret"], now=NOW, tolerance=10) == Refused(
        reason=Refusal.STALE_TIMESTAMP
    )


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        (DELIVERY_ID_HEADER, None, Refusal.MISSING_HEADERS),
        (TIMESTAMP_HEADER, None, Refusal.MISSING_HEADERS),
        (SIGNATURE_HEADER, None, Refusal.MISSING_HEADERS),
        (DELIVERY_ID_HEADER, "has space", Refusal.MALFORMED_DELIVERY_ID),
        (DELIVERY_ID_HEADER, "x" * 201, Refusal.MALFORMED_DELIVERY_ID),
        (TIMESTAMP_HEADER, "1.5", Refusal.MALFORMED_TIMESTAMP),
        (TIMESTAMP_HEADER, "-1", Refusal.MALFORMED_TIMESTAMP),
        (SIGNATURE_HEADER, "v1=zz", Refusal.MALFORMED_SIGNATURE),
        (SIGNATURE_HEADER, "", Refusal.MALFORMED_SIGNATURE),
        (SIGNATURE_HEADER, "v0=" + "a" * 64, Refusal.MALFORMED_SIGNATURE),
    ],
)
def test_malformed_or_missing_headers(name, value, reason):
    sent = headers()
    if value is None:
        del sent[name]
    else:
        sent[name] = value
    assert verify(sent, BODY, secrets=["s3cret"], now=NOW) == Refused(reason=reason)


def test_one_matching_signature_among_several_is_enough():
    sent = headers()
    other = sign("unrelated", str(int(NOW)), BODY)
    sent[SIGNATURE_HEADER] = f"{other}, v0=whatever {sent[SIGNATURE_HEADER]}"
    assert isinstance(verify(sent, BODY, secrets=["s3cret"], now=NOW), Verified)


def test_no_secret_refuses_everything():
    assert verify(headers(), BODY, secrets=[], now=NOW) == Refused(reason=Refusal.BAD_SIGNATURE)


def test_the_previous_secret_is_valid_until_the_overlap_ends():
    secrets = WebhookSecrets(current="new", previous="old", previous_until=NOW + 3600)
    assert secrets.valid_at(NOW) == ("new", "old")
    assert secrets.valid_at(NOW + 3599) == ("new", "old")
    assert secrets.valid_at(NOW + 3600) == ("new",)
    assert WebhookSecrets(current="new", previous="old").valid_at(NOW) == ("new",)
    old_signed = headers("old")
    assert isinstance(verify(old_signed, BODY, secrets=secrets.valid_at(NOW), now=NOW), Verified)
    later = NOW + 4000
    assert verify(
        headers("old", timestamp=int(later)), BODY, secrets=secrets.valid_at(later), now=later
    ) == Refused(reason=Refusal.BAD_SIGNATURE)
