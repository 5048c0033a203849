"""Concurrent logins of one account (issue 12, defect 6): a correct password is never
counted as a failure, nor refused because other attempts are in flight; concurrent wrong
guesses still get no more password checks than the policy allows."""

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
from daemon.modules.auth import throttle as throttle_module
from tests.integration.api_server import PASSWORD, serve_api

EMAIL = "crowd@example.org"


def rules(free: int = 5, lock: int = 10, address_free: int = 20) -> AuthPolicy:
    return AuthPolicy(
        hash_time_cost=1,
        hash_memory_kib=8192,
        hash_parallelism=1,
        account_throttle=ThrottlePolicy(free_failures=free, lock_failures=lock, lock_seconds=60),
        address_throttle=ThrottlePolicy(free_failures=address_free, lock_failures=50),
    )


async def make_user(pool, policy: AuthPolicy) -> None:
    await create_user(
        pool, email=EMAIL, password=PASSWORD, role=Role.VIEWER, policy=policy,
        context=AuditContext.system(),
    )  # fmt: skip


async def throttle_rows(pool) -> list[tuple[str, str, int]]:
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT scope, key, failures FROM login_throttle ORDER BY 1")
        return [tuple(row) for row in await cursor.fetchall()]


async def in_flight(pool) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM login_attempts")).fetchone()
    return row[0]


async def audited(pool, action: str) -> int:
    async with pool.connection() as conn:
        page = await list_events(conn, filters=AuditFilter(action=action), limit=500)
    return len(page.items)


async def concurrently(pool, policy, passwords, addr="203.0.113.7") -> list[str]:
    outcomes: list[str] = []

    async def one(password: str) -> None:
        try:
            await login(pool, EMAIL, password, policy=policy, client_addr=addr, request_id=None)
        except LoginThrottled:
            outcomes.append("throttled")
        except InvalidCredentials:
            outcomes.append("invalid")
        else:
            outcomes.append("ok")

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for password in passwords:
                nursery.start_soon(one, password)
    return outcomes


async def test_twelve_concurrent_correct_logins_all_succeed(pool):
    policy = rules()
    await make_user(pool, policy)
    outcomes = await concurrently(pool, policy, [PASSWORD] * 12)
    assert outcomes == ["ok"] * 12
    assert await audited(pool, "auth.login_failed") == 0
    assert await audited(pool, "auth.login_throttled") == 0
    assert await throttle_rows(pool) == []  # nothing counted, nothing blocked
    assert await in_flight(pool) == 0


async def test_correct_logins_after_failures_are_not_counted_as_failures(pool):
    # Four failures: one more (the fifth) would block. Three correct logins at once must
    # all get in: none of them is a failure, whatever the others' reservations.
    policy = rules()
    await make_user(pool, policy)
    assert await concurrently(pool, policy, ["wrong password!"] * 4) == ["invalid"] * 4
    outcomes = await concurrently(pool, policy, [PASSWORD] * 3)
    assert outcomes == ["ok"] * 3
    assert await throttle_rows(pool) == [("address", "203.0.113.7", 4)]
    assert await in_flight(pool) == 0


async def test_concurrent_wrong_guesses_get_at_most_the_allowed_checks(pool):
    policy = rules(free=5, lock=5)
    await make_user(pool, policy)
    outcomes = await concurrently(pool, policy, [f"guess number {n}" for n in range(30)])
    assert outcomes.count("invalid") == 5, outcomes
    assert outcomes.count("throttled") == 25
    assert await audited(pool, "auth.login_failed") == 5
    assert ("account", EMAIL, 5) in await throttle_rows(pool)
    assert await in_flight(pool) == 0
    with pytest.raises(LoginThrottled):  # locked: the right password is refused too
        await login(pool, EMAIL, PASSWORD, policy=policy, client_addr=None, request_id=None)


async def test_a_cancelled_attempt_is_neither_a_failure_nor_left_in_flight(pool):
    policy = rules(free=1, lock=1)
    await make_user(pool, policy)
    with trio.move_on_after(0.001):
        await login(pool, EMAIL, PASSWORD, policy=policy, client_addr="::1", request_id=None)
    assert await in_flight(pool) == 0
    assert await throttle_rows(pool) == []
    result = await login(pool, EMAIL, PASSWORD, policy=policy, client_addr="::1", request_id=None)
    assert result.user.email == EMAIL


async def test_stale_reservations_of_a_crashed_process_expire(pool):
    # A reservation whose process died is no longer counted once it is older than
    # IN_FLIGHT_SECONDS: it delays nobody for longer than that, and is no failure.
    policy = rules(free=1, lock=1)
    await make_user(pool, policy)
    async with pool.transaction() as conn:
        await conn.execute(
            "INSERT INTO login_attempts (scope, key, started_at)"
            " VALUES ('account', %s, now() - make_interval(secs => %s))",
            (EMAIL, throttle_module.IN_FLIGHT_SECONDS + 1),
        )
    result = await login(pool, EMAIL, PASSWORD, policy=policy, client_addr=None, request_id=None)
    assert result.user.email == EMAIL


async def test_twelve_concurrent_correct_logins_over_http(pool):
    async with serve_api(pool) as api:
        await api.user(Role.VIEWER, email=EMAIL)
        statuses: list[int] = []

        async def one() -> None:
            async with api.client() as client:
                response = await client.post(
                    "/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}
                )
                statuses.append(response.status_code)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for _ in range(12):
                    nursery.start_soon(one)
    assert statuses == [200] * 12


async def test_a_lucky_guess_in_a_burst_buys_the_burst_no_more_guesses(pool):
    # Driven step by step through the throttle itself: five attempts in flight (the most
    # the policy lets through), two fail, one succeeds. The success forgets only the
    # failures counted before it began, so the two stay: one more attempt may go (2
    # failures + 2 in flight < 5), the next one waits (2 + 3 would block should all
    # fail), and when the rest fail the account is blocked.
    policy = rules(free=5, lock=5)
    context = AuditContext.system()

    async def begin():
        return await throttle_module.begin_attempt(
            pool, EMAIL, address=None, policy=policy, context=context
        )

    attempts = [await begin() for _ in range(5)]
    with trio.move_on_after(0.5) as waiting:
        await begin()
    assert waiting.cancelled_caught  # a sixth waits for the five
    for failed in attempts[:2]:
        async with pool.transaction() as conn:
            await throttle_module.fail(conn, failed, policy)
    async with pool.transaction() as conn:
        await throttle_module.succeed(conn, attempts[2])
    assert await throttle_rows(pool) == [("account", EMAIL, 2)]
    sixth = await begin()
    with trio.move_on_after(0.5) as waiting:
        await begin()
    assert waiting.cancelled_caught
    assert await in_flight(pool) == 3
    for failed in [*attempts[3:], sixth]:
        async with pool.transaction() as conn:
            await throttle_module.fail(conn, failed, policy)
    with pytest.raises(LoginThrottled) as refused:
        await begin()
    assert 59 <= refused.value.retry_after <= 60
    assert await throttle_rows(pool) == [("account", EMAIL, 5)]
    assert await in_flight(pool) == 0
