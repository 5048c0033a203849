"""Per-kind configuration rules that need no database: a stored secret stays with its
origin (an edit cannot send it to another server)."""

from __future__ import annotations

import pytest

from daemon.modules.sources.kind_config import SourcePolicy, check_config, same_origin
from daemon.shared.errors import ValidationFailed

STORED_CONFIG = {"url": "https://feeds.example.org/alerts.xml", "max_redirects": 5}
STORED_SECRETS = {"auth_header": "Bearer very-secret"}
POLICY = SourcePolicy()


@pytest.mark.parametrize("kind", ["http", "feed"])
@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example.net/alerts.xml",  # another host
        "http://feeds.example.org/alerts.xml",  # another scheme
        "https://feeds.example.org:8443/alerts.xml",  # another port
    ],
)
def test_a_url_moved_to_another_origin_needs_the_auth_header_again(kind, url):
    with pytest.raises(ValidationFailed) as refused:
        check_config(kind, {"url": url}, POLICY, stored_secrets=STORED_SECRETS,
                     stored_config=STORED_CONFIG)  # fmt: skip
    assert [error["field"] for error in refused.value.errors] == ["config.auth_header"]


@pytest.mark.parametrize("kind", ["http", "feed"])
def test_the_auth_header_is_kept_on_the_same_origin_or_replaced_or_cleared(kind):
    same = "https://FEEDS.example.org:443/other.xml"
    stored = {"stored_secrets": STORED_SECRETS, "stored_config": STORED_CONFIG}
    _, secrets = check_config(kind, {"url": same}, POLICY, **stored)
    assert secrets == STORED_SECRETS
    elsewhere = "https://other.example.net/a.xml"
    replaced = {"url": elsewhere, "auth_header": "Bearer new"}
    _, secrets = check_config(kind, replaced, POLICY, **stored)
    assert secrets == {"auth_header": "Bearer new"}
    _, secrets = check_config(kind, {"url": elsewhere, "auth_header": None}, POLICY, **stored)
    assert secrets == {}


def test_same_origin():
    assert same_origin("http://a.example/x", "http://A.EXAMPLE:80/y")
    assert not same_origin("http://a.example/x", "https://a.example/x")
    assert not same_origin("http://a.example/x", None)
    assert not same_origin("http://a.example:99999/x", "http://a.example/x")


def test_a_configuration_without_url_is_refused_for_its_url():
    with pytest.raises(ValidationFailed) as refused:
        check_config("feed", {}, POLICY, stored_secrets=STORED_SECRETS, stored_config=STORED_CONFIG)
    assert [error["field"] for error in refused.value.errors] == ["config.url"]
