"""Brute-force throttling: delays, then a lock, per account and per client address,
shared through PostgreSQL and recorded in the audit log."""

from __future__ import annotations

import pytest
import trio

from daemon.modules.audit import AuditContext, AuditFilter, list_events
from daemon.modules.auth import (
    AuthPolicy,
    InvalidCredentials,
    LoginThrottled,
    Role,
    ThrottlePolicy,
    create_user,
    login,
)

PASSWORD = "correct horse battery"


def policy(account: ThrottlePolicy, address: ThrottlePolicy | None = None) -> AuthPolicy:
    return AuthPolicy(
        hash_time_cost=1,
        hash_memory_kib=8192,
        hash_parallelism=1,
        account_throttle=account,
        address_throttle=address or ThrottlePolicy(free_failures=1000, lock_failures=1000),
    )


async def attempt(pool, rules, email="vic@example.org", password="wrong password!", addr=None):
    return await login(pool, email, password, policy=rules, client_addr=addr, request_id=None)


async def shift_time(pool, seconds: float) -> None:
    """Pretend the last failures and blocks happened ``seconds`` earlier."""
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE login_throttle"
            " SET last_failure_at = last_failure_at - make_interval(secs => %s),"
            " blocked_until = blocked_until - make_interval(secs => %s)",
            (seconds, seconds),
        )


async def test_twenty_wrong_passwords_lock_the_account(pool):
    rules = policy(
        ThrottlePolicy(free_failures=5, lock_failures=10, base_delay=1, lock_seconds=900)
    )
    await create_user(
        pool, email="vic@example.org", password=PASSWORD, role=Role.VIEWER, policy=rules,
        context=AuditContext.system(),
    )  # fmt: skip
    outcomes = []
    for _ in range(20):
        try:
            await attempt(pool, rules, addr="203.0.113.5")
        except LoginThrottled as exc:
            outcomes.append(("throttled", exc.retry_after))
        except InvalidCredentials:
            outcomes.append(("invalid", None))
        else:
            raise AssertionError("a wrong password was accepted")
    # The first five failures are free; the fifth blocks the next attempt for 1 s.
    assert outcomes[:5] == [("invalid", None)] * 5
    assert all(kind == "throttled" for kind, _ in outcomes[5:])
    assert 1 <= outcomes[5][1] <= 1

    # Blocked attempts are not counted; once the delay is over, each failure doubles it.
    for expected in (2, 4, 8, 16):
        await shift_time(pool, 3600)  # the delay passed, but not the failure window...
        async with pool.transaction() as conn:  # ...so keep the failures recent
            await conn.execute("UPDATE login_throttle SET last_failure_at = now()")
        with pytest.raises(InvalidCredentials):
            await attempt(pool, rules)
        with pytest.raises(LoginThrottled) as caught:
            await attempt(pool, rules)
        assert caught.value.retry_after == expected
    await shift_time(pool, 17)
    async with pool.transaction() as conn:
        await conn.execute("UPDATE login_throttle SET last_failure_at = now()")
    with pytest.raises(InvalidCredentials):
        await attempt(pool, rules)  # the tenth failure: locked
    with pytest.raises(LoginThrottled) as caught:
        await attempt(pool, rules, password=PASSWORD)  # the right password is refused too
    assert 899 <= caught.value.retry_after <= 900

    # Another email from the same address is not concerned (address limits are high).
    with pytest.raises(InvalidCredentials):
        await attempt(pool, rules, email="other@example.org")

    # When the lock is over (and the window passed) the right password works again and
    # resets the account's counter.
    await shift_time(pool, 901)
    result = await attempt(pool, rules, password=PASSWORD)
    assert result.user.email == "vic@example.org"
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT scope, key FROM login_throttle")).fetchall()
        page = await list_events(conn, filters=AuditFilter(action_prefix="auth."), limit=500)
    assert ("account", "vic@example.org") not in rows
    actions = [e.action for e in reversed(page.items)]
    assert actions.count("auth.login_failed") == 5 + 4 + 1 + 1
    # 20 refusals, all within a minute: one event (refusals are audited once a minute per
    # blocked key, so a flood of blocked attempts cannot fill the append-only log).
    assert actions.count("auth.login_throttled") == 1
    assert actions[-1] == "auth.login"
    throttled = next(e for e in page.items if e.action == "auth.login_throttled")
    assert throttled.target_type == "account" and throttled.target_id == "vic@example.org"
    locked = next(e for e in page.items if e.details.get("blocked_seconds") == 900)
    assert locked.details["failures"] == 10 and locked.details["reason"] == "wrong_password"


async def test_unknown_emails_are_throttled_like_known_ones(pool):
    rules = policy(ThrottlePolicy(free_failures=2, lock_failures=2, lock_seconds=60))
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await attempt(pool, rules, email="Ghost@Example.org")
    with pytest.raises(LoginThrottled) as caught:
        await attempt(pool, rules, email="ghost@example.org ")
    assert caught.value.retry_after == 60


async def test_per_address_throttle_spans_accounts(pool):
    rules = policy(
        ThrottlePolicy(free_failures=100, lock_failures=100),
        ThrottlePolicy(free_failures=3, lock_failures=4, base_delay=5, lock_seconds=120),
    )
    for n in range(3):
        with pytest.raises(InvalidCredentials):
            await attempt(pool, rules, email=f"user{n}@example.org", addr="198.51.100.9")
    with pytest.raises(LoginThrottled) as caught:
        await attempt(pool, rules, email="fresh@example.org", addr="198.51.100.9")
    assert caught.value.retry_after == 5
    # Another address is free.
    with pytest.raises(InvalidCredentials):
        await attempt(pool, rules, email="fresh@example.org", addr="198.51.100.10")


async def test_counters_start_afresh_after_the_window(pool):
    rules = policy(ThrottlePolicy(free_failures=2, lock_failures=3, window_seconds=600))
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await attempt(pool, rules)
    await shift_time(pool, 601)
    with pytest.raises(InvalidCredentials):
        await attempt(pool, rules)  # counted as the first failure again, so no block
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT failures FROM login_throttle")).fetchone()
    assert row[0] == 1


async def test_a_concurrent_burst_gets_no_more_checks_than_the_policy_allows(pool):
    rules = policy(ThrottlePolicy(free_failures=5, lock_failures=5, lock_seconds=60))
    await create_user(
        pool, email="burst@example.org", password=PASSWORD, role=Role.VIEWER, policy=rules,
        context=AuditContext.system(),
    )  # fmt: skip
    outcomes = []

    async def one(password):
        try:
            await attempt(pool, rules, email="burst@example.org", password=password)
        except LoginThrottled:
            outcomes.append("throttled")
        except InvalidCredentials:
            outcomes.append("invalid")
        else:
            outcomes.append("ok")

    async with trio.open_nursery() as nursery:
        for n in range(40):
            nursery.start_soon(one, PASSWORD if n == 39 else f"guess number {n}")
    # Five wrong passwords checked at most. The right one is no failure: when it is checked
    # within the burst it forgets the account's failures, as any successful login does,
    # and one more guess may be checked (not refused: the waiting attempts wait for it).
    assert outcomes.count("invalid") <= 5, outcomes
    assert outcomes.count("invalid") + outcomes.count("ok") <= 6, outcomes
    assert outcomes.count("throttled") >= 34
    if "ok" not in outcomes:  # the right password came after the lock: refused
        with pytest.raises(LoginThrottled):
            await attempt(pool, rules, email="burst@example.org", password=PASSWORD)


async def test_email_variants_share_one_counter(pool):
    rules = policy(ThrottlePolicy(free_failures=2, lock_failures=2, lock_seconds=60))
    for email in ("admin@example.org", " ADMIN@example.org"):
        with pytest.raises(InvalidCredentials):
            await attempt(pool, rules, email=email)
    # PostgreSQL lowercases the dotted capital I to a plain i, as the user lookup does.
    for variant in ("admİn@example.org", "Admin@Example.Org"):
        with pytest.raises(LoginThrottled):
            await attempt(pool, rules, email=variant)
