"""The pure parts of the edge: client address behind proxies, CORS decisions."""

from __future__ import annotations

import pytest

from daemon.api.cors import CorsPolicy
from daemon.api.proxies import client_address, parse_networks
from daemon.shared.config import Settings
from daemon.shared.errors import ConfigError

PROXIES = parse_networks(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),  # peer not a proxy: header ignored
        ("10.0.0.1", [], "10.0.0.1"),  # a proxy without the header: itself
        ("10.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", ["6.6.6.6, 198.51.100.1, 10.0.0.2"], "198.51.100.1"),  # forged left part
        ("10.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # header given twice
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),  # only proxies: the first
        ("10.0.0.1", ["garbage, 198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", ["198.51.100.1, garbage"], "10.0.0.1"),  # garbage from a proxy: peer
        ("::1", ["2001:db8::7"], "2001:db8::7"),
        (None, ["198.51.100.1"], None),
    ],
)
def test_client_address(peer, forwarded, expected):
    assert client_address(peer, forwarded, PROXIES) == expected


def test_no_trusted_proxies_means_the_peer():
    assert client_address("10.0.0.1", ["198.51.100.1"], ()) == "10.0.0.1"


def test_cors_policy():
    policy = CorsPolicy.of(["https://ops.example.org"])
    assert policy.allows("https://OPS.example.org")
    assert not policy.allows("https://ops.example.org.evil.example")
    assert not policy.allows(None)
    status, headers = policy.preflight("https://evil.example")
    assert status == 403 and dict(headers) == {b"vary": b"Origin"}
    status, headers = policy.preflight("https://ops.example.org")
    assert status == 204
    assert dict(headers)[b"access-control-allow-origin"] == b"https://ops.example.org"
    assert CorsPolicy.of([]).response_headers("https://ops.example.org") == []


def test_settings_parse_and_check_lists(monkeypatch):
    settings = Settings(
        cors_allowed_origins=" https://A.example.org/ , http://b:8080",
        http_trusted_proxies="10.0.0.0/8,::1",
    )
    assert settings.cors_allowed_origins == ("https://a.example.org", "http://b:8080")
    assert settings.http_trusted_proxies == ("10.0.0.0/8", "::1")
    assert Settings(cors_allowed_origins="").cors_allowed_origins == ()
    monkeypatch.setenv("TRIAGED_CORS_ALLOWED_ORIGINS", "*")
    monkeypatch.setenv("TRIAGED_HTTP_TRUSTED_PROXIES", "proxy.local")
    from daemon.shared.config import load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert any("TRIAGED_CORS_ALLOWED_ORIGINS" in p for p in caught.value.problems)
    assert any("TRIAGED_HTTP_TRUSTED_PROXIES" in p for p in caught.value.problems)
