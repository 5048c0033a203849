"""Login, bearer tokens, logout, password changes, rehashing, and the timing of failures."""

from __future__ import annotations

import hashlib
import logging
import statistics
import time

import attrs
import pytest
import trio

from daemon.composition import compose
from daemon.modules.audit import Actor, ActorType, AuditContext, AuditFilter, list_events
from daemon.modules.auth import (
    AuthPolicy,
    InvalidAccountData,
    InvalidCredentials,
    PermissionDenied,
    PrincipalKind,
    Role,
    ThrottlePolicy,
    Unauthenticated,
    authenticate,
    change_own_password,
    create_user,
    login,
    logout,
    update_user,
)
from daemon.shared.config import Settings

FAST = AuthPolicy(hash_time_cost=1, hash_memory_kib=8192, hash_parallelism=1)
SYSTEM = AuditContext.system()
PASSWORD = "correct horse battery"


async def make(pool, email, role=Role.ANALYST, policy=FAST):
    return await create_user(
        pool, email=email, password=PASSWORD, role=role, policy=policy, context=SYSTEM
    )


async def do_login(pool, email, password=PASSWORD, policy=FAST, addr="192.0.2.1"):
    return await login(pool, email, password, policy=policy, client_addr=addr, request_id="r1")


async def events(pool, **filters):
    async with pool.connection() as conn:
        return (await list_events(conn, filters=AuditFilter(**filters), limit=500)).items


async def test_login_authenticate_logout(pool):
    user = await make(pool, "Ann@Example.org", Role.VIEWER)
    result = await do_login(pool, "ann@example.ORG")
    assert result.user == user and result.token.startswith("tgs_")
    principal = await authenticate(pool, result.token)
    assert (principal.kind, principal.id, principal.role, principal.name) == (
        PrincipalKind.USER,
        user.id,
        Role.VIEWER,
        "Ann@Example.org",
    )
    assert principal.session_id == result.session_id
    assert principal.expires_at == result.expires_at
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT expires_at - created_at, last_used_at IS NOT NULL, token_hash, client_addr"
                " FROM sessions"
            )
        ).fetchone()
    assert row[0].total_seconds() == 12 * 3600 and row[1]  # last use recorded
    assert row[2] == hashlib.sha256(result.token.encode()).digest()
    assert row[3] == "192.0.2.1"

    context = AuditContext(actor=principal.actor, client_addr="192.0.2.1", request_id="r2")
    assert await logout(pool, result.token, context=context) is True
    assert await logout(pool, result.token, context=context) is False  # idempotent
    with pytest.raises(Unauthenticated):
        await authenticate(pool, result.token)
    (ok,) = await events(pool, action="auth.login")
    assert ok.actor == Actor(type=ActorType.USER, id=user.id) and ok.client_addr == "192.0.2.1"
    assert ok.request_id == "r1" and ok.target_id == str(result.session_id)
    (out,) = await events(pool, action="auth.logout")
    assert out.actor == principal.actor and out.request_id == "r2"


@pytest.mark.parametrize(
    "token", ["", "tgs_", "tgs_nope", "Bearer x", "tgd_00000000_nope", "é" * 10, "x" * 500]
)
async def test_bad_tokens_are_unauthenticated(pool, token):
    with pytest.raises(Unauthenticated):
        await authenticate(pool, token)


async def test_expired_and_disabled_sessions_are_refused(pool):
    await make(pool, "root@example.org", Role.ADMIN)
    user = await make(pool, "bo@example.org")
    expired = await do_login(pool, "bo@example.org")
    live = await do_login(pool, "bo@example.org")
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = %s",
            (expired.session_id,),
        )
    with pytest.raises(Unauthenticated):
        await authenticate(pool, expired.token)
    await authenticate(pool, live.token)
    async with pool.transaction() as conn:  # disabled behind the module's back: still refused
        await conn.execute("UPDATE users SET active = false WHERE id = %s", (user.id,))
    with pytest.raises(Unauthenticated):
        await authenticate(pool, live.token)


async def test_session_lifetime_follows_the_policy(pool):
    await make(pool, "cy@example.org")
    short = AuthPolicy(
        session_ttl_seconds=90, hash_time_cost=1, hash_memory_kib=8192, hash_parallelism=1
    )
    result = await do_login(pool, "cy@example.org", policy=short)
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT expires_at - created_at FROM sessions")).fetchone()
    assert row[0].total_seconds() == 90
    assert result.expires_at is not None


async def test_failures_look_the_same(pool):
    await make(pool, "root@example.org", Role.ADMIN)
    disabled = await make(pool, "off@example.org")
    await update_user(pool, disabled.id, active=False, context=SYSTEM)
    await make(pool, "dee@example.org")
    messages = set()
    for email, password in [
        ("nobody@example.org", PASSWORD),
        ("dee@example.org", "wrong password!"),
        ("off@example.org", PASSWORD),
        ("x" * 400, PASSWORD),
    ]:
        with pytest.raises(InvalidCredentials) as caught:
            await do_login(pool, email, password)
        messages.add((type(caught.value), caught.value.message))
    assert messages == {(InvalidCredentials, "Invalid email or password.")}
    failed = await events(pool, action="auth.login_failed")
    assert [e.details["reason"] for e in reversed(failed)] == [
        "unknown_email",
        "wrong_password",
        "disabled",
        "unknown_email",
    ]
    assert all(e.actor == Actor.anonymous() for e in failed)


async def test_change_own_password_keeps_the_current_session_only(pool):
    user = await make(pool, "di@example.org")
    current = await do_login(pool, "di@example.org")
    other = await do_login(pool, "di@example.org")
    principal = await authenticate(pool, current.token)
    context = AuditContext(actor=principal.actor)
    with pytest.raises(InvalidAccountData, match="current_password: wrong password"):
        await change_own_password(
            pool, principal, "not it at all", "brand new password", policy=FAST, context=context
        )
    with pytest.raises(InvalidAccountData, match="new_password: must be at least") as weak:
        await change_own_password(pool, principal, PASSWORD, "short", policy=FAST, context=context)
    assert weak.value.field == "new_password"
    revoked = await change_own_password(
        pool, principal, PASSWORD, "brand new password", policy=FAST, context=context
    )
    assert revoked == 1
    assert (await authenticate(pool, current.token)).id == user.id
    with pytest.raises(Unauthenticated):
        await authenticate(pool, other.token)
    with pytest.raises(InvalidCredentials):
        await do_login(pool, "di@example.org")
    await do_login(pool, "di@example.org", "brand new password")
    (event,) = await events(pool, action="user.password_changed")
    assert event.actor == principal.actor and event.details == {"sessions_revoked": 1}


async def test_api_keys_have_no_password(pool):
    from daemon.modules.auth import create_api_key

    created = await create_api_key(pool, name="exporter", role=Role.VIEWER, context=SYSTEM)
    principal = await authenticate(pool, created.secret)
    with pytest.raises(PermissionDenied):
        await change_own_password(pool, principal, "a", "b" * 20, policy=FAST, context=SYSTEM)


async def test_outdated_hash_is_upgraded_at_login(pool):
    old = AuthPolicy(hash_time_cost=1, hash_memory_kib=8192, hash_parallelism=1)
    new = AuthPolicy(hash_time_cost=2, hash_memory_kib=9216, hash_parallelism=1)
    user = await make(pool, "ed@example.org", policy=old)

    async def stored():
        async with pool.connection() as conn:
            row = await (
                await conn.execute("SELECT password_hash FROM users WHERE id = %s", (user.id,))
            ).fetchone()
        return row[0]

    assert "m=8192,t=1,p=1" in await stored()
    await do_login(pool, "ed@example.org", policy=new)
    assert "m=9216,t=2,p=1" in await stored()
    await do_login(pool, "ed@example.org", policy=new)  # the new hash verifies
    rehashed = [e.details for e in await events(pool, action="auth.login")]
    assert rehashed == [{}, {"rehashed": True}]


async def test_secrets_are_stored_hashed_and_never_logged(pool, caplog):
    caplog.set_level(logging.DEBUG)
    from daemon.modules.auth import create_api_key

    await make(pool, "fi@example.org")
    token = (await do_login(pool, "fi@example.org")).token
    key = (await create_api_key(pool, name="k", role="viewer", context=SYSTEM)).secret
    await authenticate(pool, token)
    await authenticate(pool, key)
    async with pool.connection() as conn:
        for table in ("users", "sessions", "api_keys", "audit_events", "login_throttle"):
            rows = await (await conn.execute(f"SELECT t::text FROM {table} t")).fetchall()
            dump = "\n".join(r[0] for r in rows)
            for secret in (token, key, PASSWORD, token[4:], key.split("_", 2)[2]):
                assert secret not in dump, table
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    for secret in (token, key, PASSWORD):
        assert secret not in logged


async def test_unknown_email_and_wrong_password_take_the_same_time(pool):
    """Median of 50 tries each, interleaved, with the same hashing parameters."""
    lenient = ThrottlePolicy(free_failures=1000, lock_failures=1000)
    policy = AuthPolicy(
        hash_time_cost=1,
        hash_memory_kib=16384,
        hash_parallelism=1,
        account_throttle=lenient,
        address_throttle=lenient,
    )
    await make(pool, "known@example.org", policy=policy)

    async def attempt(email: str) -> tuple[float, str]:
        started = time.perf_counter()
        with pytest.raises(InvalidCredentials) as caught:
            await login(
                pool, email, "wrong password!!", policy=policy, client_addr="198.51.100.7",
                request_id=None,
            )  # fmt: skip
        return time.perf_counter() - started, caught.value.message

    for _ in range(5):  # warm up: connections, the dummy hash, prepared statements
        await attempt("known@example.org")
        await attempt("unknown@example.org")
    known, unknown, messages = [], [], set()
    for _ in range(50):
        for email, samples in (("known@example.org", known), ("unknown@example.org", unknown)):
            seconds, message = await attempt(email)
            samples.append(seconds)
            messages.add(message)
    assert len(messages) == 1
    a, b = statistics.median(known), statistics.median(unknown)
    print(f"median known/wrong password {a * 1000:.1f} ms, unknown email {b * 1000:.1f} ms")
    assert abs(a - b) / min(a, b) < 0.20, (a, b)


async def test_hashing_does_not_stall_the_event_loop(pool):
    """20 concurrent logins with the real default hashing parameters; a 10 ms ticker keeps
    time. (Throttling off: attempts in flight count as failures until they succeed, so 20
    concurrent logins of one account would be throttled.)"""
    no_throttle = ThrottlePolicy(free_failures=1000, lock_failures=1000)
    # The process's policy: hashing on its pool of low-priority CPU threads.
    policy = attrs.evolve(
        compose(Settings()).auth, account_throttle=no_throttle, address_throttle=no_throttle
    )
    assert policy.cpu is not None
    await make(pool, "gu@example.org", policy=policy)
    lateness: list[float] = []
    done = trio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = trio.current_time()
            await trio.sleep(0.01)
            lateness.append(trio.current_time() - before - 0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        async with trio.open_nursery() as logins:
            for _ in range(20):
                logins.start_soon(do_login, pool, "gu@example.org", PASSWORD, policy)
        done.set()
    # A hash on the loop (~0.15 s each here) would make most ticks late by that much; a
    # loaded host may still preempt the process now and then, so the tail is judged loosely.
    lateness.sort()
    assert len(lateness) > 10
    assert lateness[int(len(lateness) * 0.9)] < 0.05, lateness[-10:]
    assert lateness[-1] < 0.5, lateness[-10:]
