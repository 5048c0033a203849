"""Brute-force throttling of logins (and password changes), per account and per client
address.

The state lives in PostgreSQL, so every ``triaged api`` process shares it:
``login_throttle`` counts **failures** (and the block they caused), ``login_attempts``
holds the attempts **in flight** (reserved before their password check, removed when its
outcome is known). The account key is the email as PostgreSQL lowercases it (the same
function the user lookup uses), whether or not such a user exists: an unknown email is
throttled exactly like a known one, so throttling does not reveal which emails exist.
The arithmetic of delays and locks is :class:`ThrottlePolicy`'s.

The rules, for one key with ``failures`` recent failures and ``in_flight`` attempts in
flight:

- blocked (a failure set a block that has not expired): refused at once, nothing
  reserved (:class:`LoginThrottled`);
- ``in_flight`` is 0, or the policy would not block even if every attempt in flight
  failed (``block_seconds(failures + in_flight) == 0``): the attempt is reserved and its
  password may be checked;
- otherwise the attempt **waits** (polling, holding no connection) until the attempts in
  flight are decided, then applies these rules again: if they failed, their block refuses
  it; if one succeeded, the account's failures are forgotten and it goes ahead.

So a burst of wrong guesses gets exactly as many password checks as the policy allows
(no more attempts are in flight than the failures the policy lets through without a
block), while a correct password is never counted as a failure and never refused because
of other attempts in flight: at worst it waits for them. The decisions of one key are
serialised by a transaction-level advisory lock; a failure is counted and its
reservation dropped in one statement, so the sum of both never dips.
"""

from __future__ import annotations

import logging
import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from daemon.modules.audit import AuditContext, record
from daemon.modules.auth.errors import LoginThrottled
from daemon.modules.auth.policy import retry_after
from daemon.modules.auth.users import SQL

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from daemon.modules.auth.policy import AuthPolicy, ThrottlePolicy
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

log = logging.getLogger("triaged.auth")

# A reservation older than this no longer counts (its process died, or its check is stuck):
# far longer than any password check, short enough that a crash delays logins briefly.
IN_FLIGHT_SECONDS = 60.0
# How long an attempt waits for the attempts in flight before it is refused (429, retry
# after 1 s). Only reached when checks take this long (a grossly overloaded host).
WAIT_SECONDS = 20.0
_POLL_FIRST, _POLL_MAX = 0.01, 0.25
_RELEASE_TIMEOUT = 5.0


@attrs.define(kw_only=True)
class Attempt:
    """An attempt reserved for its password check: the account key as counted, the
    client address, and its reservations (one per scope). Settle it with :func:`fail` or
    :func:`succeed`; :func:`attempt` releases an unsettled one."""

    account: str
    address: str | None
    reservations: list[tuple[str, str, int]]  # (scope, key, login_attempts.id)
    failures_before: int  # the account's failures as stored when it was reserved
    settled: bool = False


@attrs.frozen(kw_only=True)
class Failure:
    """A failure as counted: the account's recent failures including it, and the longest
    block it set (0: none)."""

    failures: int
    blocked_seconds: float


class _Blocked(Exception):
    def __init__(self, scope: str, key: str, seconds: float) -> None:
        self.scope, self.key, self.seconds = scope, key, seconds


@asynccontextmanager
async def attempt(
    pool: Pool, email: str, *, address: str | None, policy: AuthPolicy, context: AuditContext
) -> AsyncIterator[Attempt]:
    """Reserve an attempt (:func:`begin_attempt`) for the block's password check; the block
    settles it with :func:`fail` or :func:`succeed` in a transaction that commits within
    the block. On leaving the block unsettled, or by an exception (an error, a
    cancellation, a settling transaction that did not commit), the reservation is
    released (idempotent), shielded from cancellation: an attempt whose outcome was never
    known is no failure. Raise the caller's own refusals after the block.

    Raises:
        LoginThrottled: see :func:`begin_attempt`.
    """
    reserved = await begin_attempt(pool, email, address=address, policy=policy, context=context)
    try:
        yield reserved
    except BaseException:
        await _release(pool, [r[2] for r in reserved.reservations])
        raise
    if not reserved.settled:
        await _release(pool, [r[2] for r in reserved.reservations])


async def begin_attempt(
    pool: Pool, email: str, *, address: str | None, policy: AuthPolicy, context: AuditContext
) -> Attempt:
    """Reserve an attempt for the account and the address (the rules are the module's),
    waiting while attempts in flight decide whether it may go ahead. Each try is one
    short transaction; no connection is held while waiting. Cancellation leaves nothing
    reserved. Prefer :func:`attempt`, which releases the reservation on any exit.

    Raises:
        LoginThrottled: the account or the address is blocked (audited as
            ``auth.login_throttled``, at most once a minute per blocked key), or the
            attempts in flight were not decided within ``WAIT_SECONDS`` (not audited).
    """
    scopes: list[tuple[str, str, ThrottlePolicy]] = [
        ("account", email.strip(), policy.account_throttle)
    ]
    if address is not None:
        scopes.append(("address", address, policy.address_throttle))
    pause = _POLL_FIRST
    try:
        with trio.fail_after(WAIT_SECONDS):
            while True:
                tried = await _try_reserve(pool, scopes)
                if tried is not None:
                    reserved, before = tried
                    return Attempt(
                        account=reserved[0][1],
                        address=address,
                        reservations=reserved,
                        failures_before=before,
                    )
                await trio.sleep(pause * random.uniform(0.5, 1.5))  # jitter
                pause = min(_POLL_MAX, pause * 1.5)
    except _Blocked as blocked:
        seconds = retry_after(blocked.seconds)
        await _audit_refusal(pool, context, blocked.scope, blocked.key, seconds)
        raise LoginThrottled(seconds) from None
    except trio.TooSlowError:
        log.warning(
            "a login waited %.0f s for the attempts in flight on its account or address; "
            "refused (429)",
            WAIT_SECONDS,
            extra={"action": "auth.login_wait_timeout"},
        )
        raise LoginThrottled(1) from None


async def _try_reserve(
    pool: Pool, scopes: list[tuple[str, str, ThrottlePolicy]]
) -> tuple[list[tuple[str, str, int]], int] | None:
    """One try, in one transaction: raises _Blocked, returns the reservations and the
    account's failures as stored, or None (wait: attempts in flight decide). A
    cancellation after the commit releases what it reserved."""
    reserved: list[tuple[str, str, int]] = []
    before = 0
    try:
        async with pool.transaction() as conn:
            keys = []
            for scope, key, rule in scopes:  # always account first: no deadlock
                row = await (
                    await conn.execute(SQL["throttle_lock"], {"scope": scope, "key": key})
                ).fetchone()
                assert row is not None
                key = str(row[0])
                row = await (
                    await conn.execute(
                        SQL["throttle_state"],
                        {
                            "scope": scope,
                            "key": key,
                            "window": rule.window_seconds,
                            "in_flight": IN_FLIGHT_SECONDS,
                        },
                    )
                ).fetchone()
                assert row is not None
                failures, blocked, in_flight = int(row[0]), float(row[1]), int(row[2])
                if scope == "account":
                    before = int(row[3])
                if blocked > 0:
                    raise _Blocked(scope, key, blocked)
                # Wait if the attempts in flight, should they all fail, would block.
                wait = in_flight > 0 and rule.block_seconds(failures + in_flight) > 0
                keys.append((scope, key, wait))
            if any(wait for _, _, wait in keys):
                return None
            for scope, key, _ in keys:
                row = await (
                    await conn.execute(SQL["throttle_reserve"], {"scope": scope, "key": key})
                ).fetchone()
                assert row is not None
                reserved.append((scope, key, int(row[0])))
    except BaseException:
        if reserved:  # committed or not: deleting is harmless either way
            await _release(pool, [r[2] for r in reserved])
        raise
    return reserved, before


async def fail(conn: TrioConnection, attempt: Attempt, policy: AuthPolicy) -> Failure:
    """The password was wrong (or the user unknown or disabled): count a failure for the
    account and the address, set the block the policy asks for, and drop the
    reservations, in the caller's transaction."""
    rules = {"account": policy.account_throttle, "address": policy.address_throttle}
    account_failures, longest = 0, 0.0
    for scope, key, reservation in attempt.reservations:
        rule = rules[scope]
        row = await (
            await conn.execute(
                SQL["throttle_fail"],
                {"id": reservation, "scope": scope, "key": key, "window": rule.window_seconds},
            )
        ).fetchone()
        assert row is not None
        failures = int(row[0])
        seconds = rule.block_seconds(failures)
        if seconds > 0:
            await conn.execute(
                SQL["throttle_block"], {"scope": scope, "key": key, "seconds": seconds}
            )
            longest = max(longest, seconds)
        if scope == "account":
            account_failures = failures
    attempt.settled = True
    return Failure(failures=account_failures, blocked_seconds=longest)


async def succeed(conn: TrioConnection, attempt: Attempt) -> None:
    """The password was right: forget the account's failures counted before the attempt
    began (those of attempts that ran alongside it stay: a lucky guess within a burst
    does not buy the burst more guesses), drop the reservations; the address's failures
    stay. In the caller's transaction."""
    await conn.execute(
        SQL["throttle_forgive_account"],
        {"key": attempt.account, "before": attempt.failures_before},
    )
    await conn.execute(SQL["throttle_release"], {"ids": [r[2] for r in attempt.reservations]})
    attempt.settled = True


async def _release(pool: Pool, ids: list[int]) -> None:
    """Drop reservations (idempotent), shielded from cancellation and bounded in time. A
    failure is logged, not raised: the reservation then stops counting after
    ``IN_FLIGHT_SECONDS``."""
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + _RELEASE_TIMEOUT
        try:
            async with pool.transaction() as conn:
                await conn.execute(SQL["throttle_release"], {"ids": ids})
        except Exception as exc:  # already on an error path
            log.warning(
                "could not release login reservations (they expire in %.0f s): %s",
                IN_FLIGHT_SECONDS,
                exc,
                extra={"action": "auth.throttle_release_failed"},
            )
    if scope.cancelled_caught:
        log.warning(
            "releasing login reservations timed out (they expire in %.0f s)",
            IN_FLIGHT_SECONDS,
            extra={"action": "auth.throttle_release_failed"},
        )


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
