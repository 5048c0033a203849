"""The SSRF guard's rule (pure): which addresses a fetch may connect to, and the checks a
URL gets before any DNS; plus the small header parsers of the fetcher."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime

import pytest

from daemon.modules.ingestion import (
    AddressClass,
    AddressPolicy,
    FetchPolicy,
    FetchRefused,
    IngestionError,
    classify_address,
)
from daemon.modules.ingestion.address_policy import METADATA_ADDRESSES, parse_address
from daemon.modules.ingestion.fetch import checked_url, content_length, parse_retry_after

ip = ipaddress.ip_address

CLASSIFIED = [
    # IPv4
    ("0.0.0.0", AddressClass.UNSPECIFIED),
    ("0.1.2.3", AddressClass.UNSPECIFIED),
    ("127.0.0.1", AddressClass.LOOPBACK),
    ("127.255.255.254", AddressClass.LOOPBACK),
    ("10.0.0.1", AddressClass.PRIVATE),
    ("172.16.0.1", AddressClass.PRIVATE),
    ("172.31.255.255", AddressClass.PRIVATE),
    ("192.168.1.1", AddressClass.PRIVATE),
    ("169.254.169.254", AddressClass.LINK_LOCAL),
    ("169.254.0.1", AddressClass.LINK_LOCAL),
    ("100.64.0.1", AddressClass.SHARED),
    ("100.127.255.255", AddressClass.SHARED),
    ("224.0.0.1", AddressClass.MULTICAST),
    ("239.255.255.250", AddressClass.MULTICAST),
    ("255.255.255.255", AddressClass.BROADCAST),
    ("240.0.0.1", AddressClass.RESERVED),
    ("192.0.2.1", AddressClass.RESERVED),
    ("198.18.0.1", AddressClass.RESERVED),
    ("198.51.100.7", AddressClass.RESERVED),
    ("203.0.113.9", AddressClass.RESERVED),
    ("192.0.0.8", AddressClass.RESERVED),
    # IPv6
    ("::", AddressClass.UNSPECIFIED),
    ("::1", AddressClass.LOOPBACK),
    ("fc00::1", AddressClass.PRIVATE),
    ("fd12:3456::1", AddressClass.PRIVATE),
    ("fec0::1", AddressClass.PRIVATE),
    ("fe80::1", AddressClass.LINK_LOCAL),
    ("fe80::1%eth0", AddressClass.LINK_LOCAL),
    ("febf::1", AddressClass.LINK_LOCAL),
    ("ff02::1", AddressClass.MULTICAST),
    ("2001:db8::1", AddressClass.RESERVED),
    ("3fff::1", AddressClass.RESERVED),
    ("100::1", AddressClass.RESERVED),
    ("::7f00:1", AddressClass.RESERVED),  # IPv4-compatible, deprecated
    ("5f00::1", AddressClass.RESERVED),  # outside 2000::/3
    ("64:ff9b:1::1", AddressClass.PRIVATE),  # local-use NAT64
    # IPv6 forms carrying an IPv4 address take its class
    ("::ffff:127.0.0.1", AddressClass.LOOPBACK),
    ("::ffff:169.254.169.254", AddressClass.LINK_LOCAL),
    ("::ffff:10.1.2.3", AddressClass.PRIVATE),
    ("::ffff:0:127.0.0.1", AddressClass.LOOPBACK),  # IPv4-translated
    ("64:ff9b::127.0.0.1", AddressClass.LOOPBACK),  # NAT64
    ("64:ff9b::a9fe:a9fe", AddressClass.LINK_LOCAL),  # NAT64 of 169.254.169.254
    ("2002:7f00:1::1", AddressClass.LOOPBACK),  # 6to4 of 127.0.0.1
    ("2002:c0a8:101::", AddressClass.PRIVATE),  # 6to4 of 192.168.1.1
    # Teredo whose (obfuscated) client is 127.0.0.1: ~127.0.0.1 = 0x80ff:fffe
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", AddressClass.LOOPBACK),
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "172.15.255.255",
    "172.32.0.0",
    "169.253.255.255",
    "11.0.0.1",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize(("text", "kind"), CLASSIFIED)
def test_classify_non_public_addresses(text, kind):
    assert classify_address(ip(text)) is kind


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_are_unclassified_and_allowed(text):
    assert classify_address(ip(text)) is None
    assert AddressPolicy().refusal(ip(text)) is None
    AddressPolicy().check(ip(text))


@pytest.mark.parametrize(("text", "kind"), CLASSIFIED)
def test_default_policy_refuses_every_class(text, kind):
    with pytest.raises(FetchRefused) as caught:
        AddressPolicy().check(ip(text))
    assert kind.value in str(caught.value)
    assert isinstance(caught.value, IngestionError)  # permanent


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1", "refused: 127.0.0.1 is a loopback address"),
        ("10.0.0.1", "refused: 10.0.0.1 is a private address"),
        ("0.0.0.0", "refused: 0.0.0.0 is an unspecified address"),
        ("224.0.0.1", "refused: 224.0.0.1 is a multicast address"),
        ("fe80::1", "refused: fe80::1 is a link-local address"),
        (
            "169.254.169.254",
            "refused: 169.254.169.254 is a link-local address (cloud metadata)",
        ),
        (
            "::ffff:127.0.0.1",
            "refused: ::ffff:7f00:1 is the IPv4-mapped form of 127.0.0.1, a loopback address",
        ),
        (
            "64:ff9b::a00:1",
            "refused: 64:ff9b::a00:1 is the NAT64 form of 10.0.0.1, a private address",
        ),
    ],
)
def test_refusal_messages_name_the_class(text, message):
    with pytest.raises(FetchRefused, match="^" + re.escape(message) + "$"):
        AddressPolicy().check(ip(text))


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1",
        "::1",
        "10.0.0.1",
        "192.168.1.1",
        "fd00::1",
        "fe80::1",
        "169.254.1.1",
        "100.64.0.1",
        "::ffff:192.168.0.1",
    ],
)
def test_allow_private_allows_private_classes(text):
    policy = AddressPolicy(allow_private=True)
    assert policy.refusal(ip(text)) is None


@pytest.mark.parametrize(
    "text",
    ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255", "240.0.0.1", "192.0.2.1"],
)
def test_allow_private_still_refuses_unroutable_classes(text):
    assert AddressPolicy(allow_private=True).refusal(ip(text)) is not None


@pytest.mark.parametrize(
    "text", [str(a) for a in METADATA_ADDRESSES] + ["::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"]
)
def test_allow_private_never_allows_cloud_metadata(text):
    reason = AddressPolicy(allow_private=True).refusal(ip(text))
    assert reason is not None
    assert "cloud metadata" in reason


def test_allowed_networks_allow_exactly_their_addresses():
    policy = AddressPolicy(allowed_networks=("127.0.0.0/8", "fd12::/16"))
    assert policy.refusal(ip("127.0.0.1")) is None
    assert policy.refusal(ip("127.9.9.9")) is None
    assert policy.refusal(ip("fd12::5")) is None
    assert policy.refusal(ip("::ffff:127.0.0.1")) is None  # the mapped form of an allowed one
    assert policy.refusal(ip("::1")) is not None
    assert policy.refusal(ip("10.0.0.1")) is not None
    assert policy.refusal(ip("fd13::5")) is not None
    assert policy.refusal(ip("169.254.169.254")) is not None


def test_allowed_networks_can_allow_the_metadata_address_explicitly():
    policy = AddressPolicy(allowed_networks=("169.254.169.254/32",))
    assert policy.refusal(ip("169.254.169.254")) is None
    assert policy.refusal(ip("169.254.169.253")) is not None


def test_allowed_networks_parse_and_validate():
    policy = AddressPolicy(allowed_networks=["10.1.2.3/8"])  # host bits allowed
    assert policy.allowed_networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert AddressPolicy(allowed_networks="127.0.0.1/32").allowed_networks == (
        ipaddress.ip_network("127.0.0.1/32"),
    )
    with pytest.raises(ValueError):
        AddressPolicy(allowed_networks=("not-a-network",))
    with pytest.raises(ValueError):
        FetchPolicy(allowed_networks=("10.0.0.0/33",))


def test_parse_address_only_takes_canonical_literals():
    assert parse_address("127.0.0.1") == ip("127.0.0.1")
    assert parse_address("::1") == ip("::1")
    # Legacy spellings are host names to us; the resolver (and so the connect-time
    # check) is what turns them into addresses.
    for text in ("2130706433", "127.1", "0x7f.0.0.1", "localhost", "example.org"):
        assert parse_address(text) is None


# --- URL checks before DNS -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.org/file.txt", "scheme ftp"),
        ("file:///etc/passwd", "scheme file"),
        ("gopher://example.org/", "scheme gopher"),
        ("example.org/doc", "scheme (none)"),
        ("http://user:pw@example.org/", "user information"),
        ("http://user@example.org/", "user information"),
        ("https://:pw@example.org/", "user information"),
        ("http:///path-only", "no host"),
        ("http://[::1/", "not a valid URL"),
        ("http://exa mple.org/", "not a valid host name"),
        ("http://ex<ample.org/", "not a valid host name"),
        ("http://a..b/", "not a valid host name"),
        ("http://example.org:99999/", "not a valid port"),
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://[::1]:8080/", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[::ffff:10.0.0.1]/", "IPv4-mapped form of 10.0.0.1"),
        ("http://0.0.0.0:9000/", "unspecified"),
    ],
)
def test_checked_url_refuses(url, fragment):
    with pytest.raises(FetchRefused, match=r"^refused: ") as caught:
        checked_url(url, AddressPolicy())
    assert fragment in str(caught.value)


def test_checked_url_accepts_and_drops_the_fragment():
    assert str(checked_url("HTTPS://Example.ORG:8443/a/b?q=1#frag", AddressPolicy())) == (
        "https://example.org:8443/a/b?q=1"
    )
    assert str(checked_url("http://127.0.0.1:81/", AddressPolicy(allow_private=True))) == (
        "http://127.0.0.1:81/"
    )
    assert checked_url("http://bücher.example/x", AddressPolicy()).raw_host == (
        b"xn--bcher-kva.example"
    )
    assert checked_url("http://a_b.example./", AddressPolicy()).host == "a_b.example."


# --- the fetch policy and header parsing -------------------------------------------------


def test_fetch_policy_defaults_and_validation():
    policy = FetchPolicy()
    assert policy.max_redirects == 3
    assert policy.allow_private is False
    assert policy.allowed_networks == ()
    assert policy.address_policy == AddressPolicy()
    assert policy.user_agent.startswith("triaged/")
    for bad in (
        {"connect_timeout": 0},
        {"total_timeout": -1},
        {"max_bytes": 0},
        {"max_redirects": -1},
    ):
        with pytest.raises(ValueError):
            FetchPolicy(**bad)
    assert FetchPolicy(max_redirects=0).max_redirects == 0


NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 0 ", 0.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("Wed, 01 Jan 2025 12:01:30 GMT", 90.0),
        ("Wed, 01 Jan 2025 11:00:00 GMT", 0.0),  # in the past
        ("Wednesday, 01-Jan-25 12:00:10 GMT", 10.0),  # RFC 850 form
    ],
)
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("headers", "length"),
    [
        ({}, None),
        ({"content-length": "42"}, 42),
        ({"content-length": "x"}, None),
        ({"content-length": "-1"}, None),
        ({"content-length": "\u0661"}, None),
    ],
)
def test_content_length(headers, length):
    assert content_length(headers) == length
