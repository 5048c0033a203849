"""Pure parts of authentication: password policy, emails, roles, throttle arithmetic,
token and key formats, the auth settings."""

from __future__ import annotations

import hashlib

import pytest

from daemon.composition import auth_policy
from daemon.modules.auth import (
    AuthPolicy,
    InvalidAccountData,
    PermissionDenied,
    Principal,
    PrincipalKind,
    Role,
    ThrottlePolicy,
    WeakPassword,
)
from daemon.modules.auth.api_keys import API_KEY_PREFIX, key_hash, looks_like_api_key, new_api_key
from daemon.modules.auth.emails import check_email
from daemon.modules.auth.passwords import check_password
from daemon.modules.auth.policy import retry_after
from daemon.modules.auth.sessions import SESSION_TOKEN_PREFIX, new_session_token, token_hash
from daemon.shared.config import Settings

POLICY = AuthPolicy()


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short", "at least 12 characters"),
        ("x" * 11, "at least 12 characters"),
        ("x" * 1025, "at most 1024"),
        (" " * 20, "only spaces"),
        ("Alice.Long@Example.org", "email"),
        ("  alice.long@example.org ", "email"),
    ],
)
def test_password_policy_refusals(password, fragment):
    with pytest.raises(WeakPassword) as caught:
        check_password(password, email="alice.long@example.org", policy=POLICY)
    assert fragment in caught.value.message
    assert caught.value.field == "password"


def test_password_policy_accepts_and_follows_the_minimum():
    check_password("x" * 12, email="a@example.org", policy=POLICY)
    check_password("abcdefgh", email="a@example.org", policy=AuthPolicy(password_min_length=8))
    with pytest.raises(WeakPassword, match="at least 20"):
        check_password("x" * 19, email="a@example.org", policy=AuthPolicy(password_min_length=20))


@pytest.mark.parametrize("email", ["plain", "a@b", "two@@example.org", "sp ace@example.org", ""])
def test_malformed_emails(email):
    with pytest.raises(InvalidAccountData) as caught:
        check_email(email)
    assert caught.value.field == "email"


def test_emails_are_trimmed_not_lowercased():
    assert check_email("  Alice@Example.org ") == "Alice@Example.org"


def test_role_order():
    assert Role.ADMIN.satisfies(Role.ANALYST) and Role.ADMIN.satisfies(Role.VIEWER)
    assert Role.ANALYST.satisfies(Role.VIEWER) and not Role.ANALYST.satisfies(Role.ADMIN)
    assert not Role.VIEWER.satisfies(Role.ANALYST)
    assert [r.value for r in Role] == ["admin", "analyst", "viewer"]  # = the DB enum
    viewer = Principal(kind=PrincipalKind.USER, id=1, role=Role.VIEWER, name="v@example.org")
    viewer.require(Role.VIEWER)
    with pytest.raises(PermissionDenied, match="admin"):
        viewer.require(Role.ADMIN)


def test_throttle_arithmetic():
    rule = ThrottlePolicy(
        free_failures=5, lock_failures=10, base_delay=1.0, lock_seconds=900, window_seconds=900
    )
    assert [rule.block_seconds(n) for n in range(12)] == [
        0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 900, 900,
    ]  # fmt: skip
    capped = ThrottlePolicy(free_failures=1, lock_failures=50, base_delay=10, lock_seconds=60)
    assert capped.block_seconds(10) == 60  # the delay never exceeds the lock
    same = ThrottlePolicy(free_failures=3, lock_failures=3, lock_seconds=30)
    assert [same.block_seconds(n) for n in (2, 3)] == [0, 30]
    with pytest.raises(ValueError, match="free_failures"):
        ThrottlePolicy(free_failures=5, lock_failures=4)


def test_retry_after_is_whole_seconds_rounded_up():
    assert [retry_after(s) for s in (0.01, 1.0, 1.2, 899.5)] == [1, 1, 2, 900]


def test_session_token_format_and_hash():
    tokens = {new_session_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert token.startswith(SESSION_TOKEN_PREFIX) and len(token) == 4 + 43
        assert token_hash(token) == hashlib.sha256(token.encode()).digest()
        assert not looks_like_api_key(token)


def test_api_key_format_and_hash():
    prefix, key = new_api_key()
    assert key.startswith(f"{API_KEY_PREFIX}{prefix}_") and len(prefix) == 8
    int(prefix, 16)
    assert key.split("_", 2)[1] == prefix and len(key.split("_", 2)[2]) == 43
    assert looks_like_api_key(key)
    assert len(key_hash(key)) == 32 and key_hash(key) != key_hash(new_api_key()[1])


def test_policy_from_settings():
    settings = Settings(
        auth_session_ttl_seconds=600,
        auth_password_min_length=16,
        auth_hash_time_cost=2,
        auth_account_free_failures=3,
        auth_account_lock_failures=4,
        auth_lock_seconds=60,
    )
    policy = auth_policy(settings)
    assert policy.session_ttl_seconds == 600 and policy.password_min_length == 16
    assert policy.hash_time_cost == 2
    assert policy.account_throttle.block_seconds(4) == 60
    assert policy.address_throttle.free_failures == 20
    assert auth_policy(Settings()) == AuthPolicy()


def test_bootstrap_settings_go_together_and_the_password_is_masked():
    with pytest.raises(ValueError, match="set together"):
        Settings(bootstrap_admin_email="a@example.org")
    settings = Settings(
        bootstrap_admin_email="a@example.org", bootstrap_admin_password="a very secret one"
    )
    view = settings.public_view()
    assert view["TRIAGED_BOOTSTRAP_ADMIN_PASSWORD"] == "********"
    assert "a very secret one" not in repr(settings) + str(view)
    assert (
        Settings(bootstrap_admin_email=" ", bootstrap_admin_password="").bootstrap_admin_email
        is None
    )


def test_lock_failures_not_below_free_failures():
    with pytest.raises(ValueError, match="LOCK_FAILURES"):
        Settings(auth_account_free_failures=5, auth_account_lock_failures=4)
