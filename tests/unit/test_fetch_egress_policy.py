"""The egress allowlist's rule (pure): which hosts and addresses outbound requests may
reach when ``TRIAGED_FETCH_EGRESS_NETWORKS`` is set, decided before any DNS query."""

from __future__ import annotations

import ipaddress
import logging

import pytest
from pydantic import ValidationError

from daemon.modules.ingestion import AddressPolicy, FetchPolicy, FetchRefused, IngestionError
from daemon.modules.ingestion.egress_policy import (
    EgressPolicy,
    egress_policy,
    host_address,
    parse_numeric_ipv4,
)
from daemon.modules.ingestion.fetch import checked_url
from daemon.shared.config import Settings

ip = ipaddress.ip_address
net = ipaddress.ip_network

LOOPBACK = EgressPolicy.parse("127.0.0.0/8, ::1/128")


# --- parsing -----------------------------------------------------------------------------


def test_parse_splits_cidrs_addresses_and_names():
    policy = EgressPolicy.parse(
        " 10.20.0.0/16 , 192.168.1.7, Wiki.Corp.Example., [fd00::1], 2001:db8::/32,a_b.test"
    )
    assert policy.networks == (
        net("10.20.0.0/16"),
        net("192.168.1.7/32"),
        net("fd00::1/128"),
        net("2001:db8::/32"),
    )
    assert policy.hosts == frozenset({"wiki.corp.example", "a_b.test"})
    assert EgressPolicy.parse(["10.1.2.3/8"]).networks == (net("10.0.0.0/8"),)  # host bits


@pytest.mark.parametrize(
    "entry",
    [
        "*.example.org",  # no wildcards: names are exact
        "example.org/24",
        "10.0.0.0/33",
        "a..b",
        "bücher.example",  # write the IDNA (xn--) form
        "127.1",  # a legacy spelling of an address is not a name; write 127.0.0.1
        "1.2.3.4.5",
        "0x7f.1",
        "http://example.org",
        "example.org:443",
        "a" * 254,
    ],
)
def test_parse_refuses_malformed_entries(entry):
    with pytest.raises(ValueError, match="not a CIDR, an IP address or a host name"):
        EgressPolicy.parse([entry])
    # The setting refuses exactly what the policy refuses (the daemon never starts with
    # an allowlist it cannot build).
    with pytest.raises(ValidationError, match="fetch_egress_networks"):
        Settings(fetch_egress_networks=entry)


@pytest.mark.parametrize(
    "entries",
    ["127.0.0.0/8,::1", "[::1]", "Wiki.Corp.Example.", "x-1.test, 10.0.0.1", "localhost"],
)
def test_the_setting_accepts_what_the_policy_accepts(entries):
    settings = Settings(fetch_egress_networks=entries)
    assert EgressPolicy.parse(settings.fetch_egress_networks)


def test_no_entries_is_no_allowlist():
    with pytest.raises(ValueError, match="at least one entry"):
        EgressPolicy.parse(" , ")
    assert egress_policy(None) is None
    assert egress_policy("") is None
    assert egress_policy(()) is None
    assert egress_policy(" ,") is None
    assert egress_policy(LOOPBACK) is LOOPBACK
    assert egress_policy(("127.0.0.0/8", "::1/128")) == LOOPBACK
    assert Settings().fetch_egress_networks == ()
    assert Settings(fetch_egress_networks="").fetch_egress_networks == ()


def test_fetch_policy_takes_entries_or_a_policy():
    assert FetchPolicy().egress is None
    assert FetchPolicy(egress=()).egress is None
    assert FetchPolicy(egress=("127.0.0.0/8", "::1/128")).egress == LOOPBACK
    assert FetchPolicy(egress=LOOPBACK).egress is LOOPBACK
    with pytest.raises(ValueError):
        FetchPolicy(egress=("*",))


# --- addresses and host literals ---------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("127.1.", "127.0.0.1"),  # a trailing dot is the same host
        ("10.0x1.0", "10.1.0.0"),
        ("1.16777215", "1.255.255.255"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("fe80::1%25eth0", "fe80::1%25eth0"),
    ],
)
def test_host_address_reads_every_literal_spelling_without_dns(host, address):
    assert host_address(host) == ip(address)


@pytest.mark.parametrize(
    "host", ["example.org", "localhost", "08.1", "1.2.3.4.5", "256.1", "1.16777216", "0x1g.1"]
)
def test_host_address_of_names_and_invalid_numbers_is_none(host):
    assert host_address(host) is None


def test_parse_numeric_ipv4_refuses_what_int_would_take():
    for text in ("+1.2.3.4", "1_0.0.0.1", "\u0661.0.0.1", "", "1..2", "4294967296"):
        assert parse_numeric_ipv4(text) is None


@pytest.mark.parametrize(
    ("policy", "inside", "outside"),
    [
        (
            LOOPBACK,
            ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"],
            ["128.0.0.1", "10.0.0.1", "::2", "8.8.8.8", "::ffff:10.0.0.1"],
        ),
        (
            EgressPolicy.parse("10.20.0.0/16"),
            ["10.20.0.1", "10.20.255.255", "::ffff:10.20.3.4"],
            # Other IPv6 forms carrying an IPv4 address are routed elsewhere (a 6to4
            # relay, a NAT64 gateway): they are not the IPv4 address.
            ["10.21.0.1", "2002:a14:1::1", "64:ff9b::a14:1", "::ffff:0:a14:1"],
        ),
        (
            EgressPolicy.parse("fd12::/16,fe80::/10"),
            ["fd12::5", "fe80::1%eth0"],
            ["fd13::5", "10.0.0.1"],
        ),
        (EgressPolicy.parse("0.0.0.0/0"), ["8.8.8.8", "127.0.0.1"], ["::1", "2001:db8::1"]),
    ],
)
def test_address_refusal(policy, inside, outside):
    for text in inside:
        assert policy.address_refusal(ip(text)) is None, text
    for text in outside:
        reason = policy.address_refusal(ip(text))
        assert reason is not None and reason.startswith(f"{ip(text)} "), text
        assert reason.endswith(" is outside the egress allowlist"), text
    assert EgressPolicy.parse("10.0.0.0/8").address_refusal(ip("::ffff:127.0.0.1")) == (
        "::ffff:7f00:1 (the IPv4-mapped form of 127.0.0.1) is outside the egress allowlist"
    )


# --- hosts: decided before DNS -----------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.1", "0x7f.1", "2130706433", "[::ffff:127.0.0.1]", "::1", "localhost"],
)
def test_loopback_allowlist_allows_every_spelling_of_loopback(host):
    assert LOOPBACK.host_refusal(host) is None


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("example.org", "host 'example.org' is outside the egress allowlist (not resolved)"),
        ("Docs.Example.INVALID.", "host 'docs.example.invalid' is outside the egress allowlist"),
        ("localhost.example", "host 'localhost.example' is outside"),
        ("foo.localhost", "host 'foo.localhost' is outside"),
        ("8.8.8.8", "8.8.8.8 is outside the egress allowlist"),
        ("0x8.0x8.0x8.0x8", "8.8.8.8 is outside the egress allowlist"),
        ("134744072", "8.8.8.8 is outside the egress allowlist"),
        ("[::ffff:8.8.8.8]", "::ffff:808:808 (the IPv4-mapped form of 8.8.8.8) is outside"),
        ("2606:4700::1111", "2606:4700::1111 is outside the egress allowlist"),
        ("08.1", "'08.1' is not a valid IPv4 address"),
        ("1.2.3.4.5", "'1.2.3.4.5' is not a valid IPv4 address"),
    ],
)
def test_loopback_allowlist_refuses_everything_else_by_name(host, reason):
    refusal = LOOPBACK.host_refusal(host)
    assert refusal is not None and refusal.startswith(reason)
    assert LOOPBACK.must_check_addresses(host) == (host_address(host) is None)


def test_host_entries_allow_exactly_their_names():
    policy = EgressPolicy.parse("wiki.corp.example")
    assert policy.host_refusal("wiki.corp.example") is None
    assert policy.host_refusal("WIKI.corp.example.") is None
    assert not policy.must_check_addresses("wiki.corp.example")
    assert policy.resolved_refusal("wiki.corp.example", [ip("8.8.8.8")]) is None
    for other in ("corp.example", "x.wiki.corp.example", "wiki.corp.example.evil", "localhost"):
        assert policy.host_refusal(other) is not None, other
    # No networks: every address literal is outside.
    assert policy.host_refusal("127.0.0.1") is not None


def test_localhost_is_allowed_only_if_all_its_addresses_are_inside():
    only_v4 = EgressPolicy.parse("127.0.0.0/8")
    assert only_v4.host_refusal("localhost") is None  # to be resolved, then checked
    assert only_v4.must_check_addresses("localhost")
    assert only_v4.resolved_refusal("localhost", [ip("127.0.0.1")]) is None
    assert only_v4.resolved_refusal("localhost", [ip("127.0.0.1"), ip("::1")]) == (
        "::1 is outside the egress allowlist (resolved from 'localhost')"
    )
    assert LOOPBACK.resolved_refusal("LocalHost.", [ip("127.0.0.1"), ip("::1")]) is None
    # Listed by name: allowed whatever it resolves to (the SSRF guard still vets those).
    assert EgressPolicy.parse("localhost").resolved_refusal("localhost", [ip("::1")]) is None


def test_url_refusal_judges_configured_urls_without_dns():
    assert LOOPBACK.url_refusal("http://127.0.0.1:8000/v1") is None
    assert LOOPBACK.url_refusal("http://localhost:11434/v1") is None
    assert LOOPBACK.url_refusal("http://[::1]:8000/v1") is None
    assert "outside the egress allowlist" in (LOOPBACK.url_refusal("https://llm.corp/v1") or "")
    assert "outside" in (LOOPBACK.url_refusal("http://10.0.0.5:8000/v1") or "")
    assert EgressPolicy.parse("llm.corp").url_refusal("https://key@LLM.corp/v1") is None
    assert LOOPBACK.url_refusal("not a url") == "the URL has no host"


# --- the URL check before any request ----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://example.org/doc", "host 'example.org' is outside the egress allowlist"),
        ("https://docs.example.invalid/?token=s3cret", "host 'docs.example.invalid'"),
        ("http://8.8.8.8/", "8.8.8.8 is outside the egress allowlist"),
        ("http://0x08080808/", "8.8.8.8 is outside the egress allowlist"),
        ("http://[2606:4700::1111]/", "2606:4700::1111 is outside"),
        ("http://08.1/", "'08.1' is not a valid IPv4 address"),
    ],
)
def test_checked_url_refuses_hosts_outside_the_allowlist(url, fragment, caplog):
    with (
        caplog.at_level(logging.INFO, logger="triaged.egress"),
        pytest.raises(FetchRefused, match=r"^refused: ") as caught,
    ):
        checked_url(url, AddressPolicy(), egress=LOOPBACK)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, IngestionError)  # permanent: the document fails
    [record] = [r for r in caplog.records if getattr(r, "action", None) == "egress.refused"]
    assert fragment in record.getMessage()
    assert "s3cret" not in record.getMessage() and "s3cret" not in str(caught.value)
    assert "/doc" not in record.getMessage()


def test_checked_url_passes_allowed_hosts_on_to_the_address_rule():
    assert str(checked_url("http://127.1:81/", AddressPolicy(), egress=LOOPBACK)) == (
        "http://127.1:81/"
    )  # inside the allowlist: the connect-time check (and the SSRF guard) decide
    assert checked_url("http://localhost/", AddressPolicy(), egress=LOOPBACK)
    # Inside the allowlist but refused by the SSRF guard: both fences apply.
    with pytest.raises(FetchRefused, match="loopback address"):
        checked_url("http://127.0.0.1/", AddressPolicy(), egress=LOOPBACK)
    # Without an allowlist, nothing changes.
    assert checked_url("http://example.org/", AddressPolicy(), egress=None)
