"""Brute-force throttling of logins, per account and per client address.

The counters live in PostgreSQL (``login_throttle``), so every ``triaged api`` process
shares them. The account key is the email as typed, lowercased, whether or not such a
user exists (an unknown email is throttled exactly like a known one, so throttling does
not reveal which emails exist). The arithmetic is :class:`ThrottlePolicy`'s.

Limits: the check before a login and the count after it are separate statements, so a
burst of concurrent attempts may all pass the check before the first failure is
counted; every failure is counted all the same, and the block follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.modules.auth.users import SQL

if TYPE_CHECKING:
    from daemon.modules.auth.policy import AuthPolicy
    from daemon.shared.db.psycopg_trio import TrioConnection


def account_key(email: str) -> str:
    return email.strip().lower()


async def blocked_for(conn: TrioConnection, *, account: str, address: str | None) -> float:
    """Seconds until the account and the address may try again (0: now)."""
    row = await (
        await conn.execute(SQL["throttle_blocked"], {"account": account, "address": address})
    ).fetchone()
    if row is None or row[0] is None:
        return 0.0
    return max(0.0, (row[0] - row[1]).total_seconds())


async def record_failure(
    conn: TrioConnection, *, account: str, address: str | None, policy: AuthPolicy
) -> tuple[int, float]:
    """Count a failed login in the caller's transaction.

    Returns the account's failure count and the seconds the next attempt is blocked for
    (the longer of the account's and the address's block; 0: not blocked).
    """
    scopes = [("account", account, policy.account_throttle)]
    if address is not None:
        scopes.append(("address", address, policy.address_throttle))
    account_failures = 0
    longest = 0.0
    for scope, key, rule in scopes:
        row = await (
            await conn.execute(
                SQL["throttle_fail"],
                {"scope": scope, "key": key, "window": rule.window_seconds},
            )
        ).fetchone()
        assert row is not None
        failures = int(row[0])
        if scope == "account":
            account_failures = failures
        seconds = rule.block_seconds(failures)
        if seconds > 0:
            await conn.execute(
                SQL["throttle_block"], {"scope": scope, "key": key, "seconds": seconds}
            )
            longest = max(longest, seconds)
    return account_failures, longest


async def reset_account(conn: TrioConnection, account: str) -> None:
    """Forget the account's failures (after a successful login); the address's remain."""
    await conn.execute(SQL["throttle_reset"], {"scope": "account", "key": account})
