"""Brute-force throttling of logins (and password changes), per account and per client
address.

The counters live in PostgreSQL (``login_throttle``), so every ``triaged api`` process
shares them. The account key is the email as PostgreSQL lowercases it (the same
function the user lookup uses), whether or not such a user exists: an unknown email is
throttled exactly like a known one, so throttling does not reveal which emails exist.
The arithmetic is :class:`ThrottlePolicy`'s.

Each attempt is **counted before the password is checked** (:func:`begin_attempt`),
under the counter's row lock, and the block the attempt would cause if it failed is set
at once; a success takes it back (:func:`forgive`). So concurrent attempts queue on the
row lock and each sees the ones before it: a burst of guesses gets exactly as many
checks as the policy allows, no more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from daemon.modules.audit import AuditContext, record
from daemon.modules.auth.policy import retry_after
from daemon.modules.auth.users import SQL
from daemon.shared.errors import LoginThrottled

if TYPE_CHECKING:
    from daemon.modules.auth.policy import AuthPolicy, ThrottlePolicy
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection


@attrs.frozen(kw_only=True)
class Attempt:
    """An attempt counted in advance: the account's count including it, and how long
    further attempts are blocked should it fail (0: not)."""

    account: str
    address: str | None
    failures: int
    blocked_seconds: float


class _Blocked(Exception):
    def __init__(self, scope: str, key: str, seconds: float) -> None:
        self.scope, self.key, self.seconds = scope, key, seconds


async def begin_attempt(
    pool: Pool, email: str, *, address: str | None, policy: AuthPolicy, context: AuditContext
) -> Attempt:
    """Count an attempt for the account and the address, in one transaction.

    Raises:
        LoginThrottled: the account or the address is blocked; nothing is counted, and
            the refusal is audited (``auth.login_throttled``, at most once a minute per
            blocked key).
    """
    try:
        async with pool.transaction() as conn:
            # The account key is lowercased by PostgreSQL in the statement (as the user
            # lookup compares emails); the key as stored comes back with the count.
            scopes: list[tuple[str, str, ThrottlePolicy]] = [
                ("account", email.strip(), policy.account_throttle)
            ]
            if address is not None:
                scopes.append(("address", address, policy.address_throttle))
            counted = []
            for scope, key, rule in scopes:  # always account first: no deadlock
                row = await (
                    await conn.execute(
                        SQL["throttle_attempt"],
                        {"scope": scope, "key": key, "window": rule.window_seconds},
                    )
                ).fetchone()
                assert row is not None
                failures, blocked, key = int(row[0]), float(row[1]), str(row[2])
                if blocked > 0:
                    raise _Blocked(scope, key, blocked)  # rolls the counting back
                counted.append((scope, key, rule, failures))
            longest = 0.0
            for scope, key, rule, failures in counted:
                seconds = rule.block_seconds(failures)
                if seconds > 0:
                    await conn.execute(
                        SQL["throttle_block"], {"scope": scope, "key": key, "seconds": seconds}
                    )
                    longest = max(longest, seconds)
    except _Blocked as blocked:
        seconds = retry_after(blocked.seconds)
        await _audit_refusal(pool, context, blocked.scope, blocked.key, seconds)
        raise LoginThrottled(seconds) from None
    return Attempt(
        account=counted[0][1], address=address, failures=counted[0][3], blocked_seconds=longest
    )


async def forgive(conn: TrioConnection, attempt: Attempt) -> None:
    """The attempt succeeded: forget the account's failures, and take the attempt back
    from the address's count (in the caller's transaction)."""
    await conn.execute(SQL["throttle_forgive_account"], {"key": attempt.account})
    if attempt.address is not None:
        await conn.execute(SQL["throttle_forgive_address"], {"key": attempt.address})


async def _audit_refusal(
    pool: Pool, context: AuditContext, scope: str, key: str, seconds: int
) -> None:
    async with pool.transaction() as conn:
        params = {"target_type": scope, "target_id": key}
        recent = await (await conn.execute(SQL["throttle_recently_audited"], params)).fetchone()
        if recent is not None and recent[0]:
            return
        await record(
            conn,
            context,
            "auth.login_throttled",
            target_type=scope,
            target_id=key,
            details={"retry_after": seconds},
        )
