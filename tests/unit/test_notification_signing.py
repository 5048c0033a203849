"""Webhook signatures (Standard Webhooks style) and the channel input rules."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from daemon.modules.notifications import signature, signed_headers, verify
from daemon.modules.notifications.channel_rules import split_config
from daemon.shared.errors import ValidationFailed

BODY = b'{"type":"case.escalated"}'


def test_a_signature_is_hmac_sha256_over_id_timestamp_and_body() -> None:
    headers = signed_headers("k", "d-1", BODY, now=1_700_000_000)
    assert headers["webhook-id"] == "d-1" and headers["webhook-timestamp"] == "1700000000"
    mac = hmac.new(b"k", b"d-1.1700000000." + BODY, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
    assert verify("k", headers, BODY, now=1_700_000_100)


@pytest.mark.parametrize(
    ("secret", "body", "now"),
    [("wrong", BODY, 1_700_000_000), ("k", BODY + b" ", 1_700_000_000), ("k", BODY, 1_700_001_000)],
)
def test_a_wrong_secret_a_changed_body_or_an_old_timestamp_fail(secret, body, now) -> None:
    headers = signed_headers("k", "d-1", BODY, now=1_700_000_000)
    assert not verify(secret, headers, body, now=now)


def test_missing_headers_fail_and_several_signatures_are_accepted() -> None:
    assert not verify("k", {}, BODY)
    headers = signed_headers("k", "d-1", BODY)
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    assert verify("k", headers, BODY)
    assert signature("k", "d", 1, b"") != signature("k", "d", 2, b"")


def test_channel_config_keeps_the_secret_apart_and_names_bad_fields() -> None:
    shown, secret = split_config(
        "webhook", {"url": "https://h.example/x", "secret": "s"}, old_secret=None, creating=True
    )
    assert shown == {"url": "https://h.example/x", "format": "json"} and secret == "s"
    shown, secret = split_config(
        "email",
        {"to": "a@example.com", "host": "smtp.example.com"},
        old_secret="old",
        creating=False,
    )
    assert shown["port"] == 587 and shown["security"] == "starttls" and secret == "old"
    for kind, config, field in [
        ("webhook", {"url": "ftp://x", "secret": "s"}, "config.url"),
        ("webhook", {"url": "https://x"}, "config.secret"),
        ("webhook", {"url": "https://x", "secret": "s", "format": "xml"}, "config.format"),
        ("email", {"to": ["nope"], "host": "h"}, "config.to"),
        ("email", {"to": ["a@b.c"], "host": "h", "security": "ssl"}, "config.security"),
        ("email", {"to": ["a@b.c"], "host": "h", "bcc": "x"}, "config.bcc"),
    ]:
        with pytest.raises(ValidationFailed) as caught:
            split_config(kind, config, old_secret=None, creating=True)
        assert caught.value.errors[0]["field"] == field
