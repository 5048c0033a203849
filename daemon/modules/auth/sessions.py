"""Login sessions: log in, authenticate a bearer token (session or API key), log out,
change one's own password.

Tokens: ``tgs_`` + ``secrets.token_urlsafe(32)`` (256 bits), returned once by
:func:`login`; only their SHA-256 is stored. Anything presented as a bearer token that is
neither a live session token nor a live API key raises :class:`Unauthenticated`.

Timing: :func:`login` treats an unknown email, a wrong password and a disabled user
alike: the same exception and message (:class:`InvalidCredentials`), the same
statements, and an argon2 verification with the same parameters (against a dummy hash
for an unknown email), so neither the answer nor its time tells whether the email
exists. The only exception is a stored hash made with older parameters, which is
upgraded at that user's next successful login.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import TYPE_CHECKING

import attrs
import trio

from daemon.modules.audit import Actor, ActorType, AuditContext, record
from daemon.modules.auth import throttle
from daemon.modules.auth.api_keys import authenticate_api_key, looks_like_api_key
from daemon.modules.auth.emails import looks_like_email, normalize_login_email
from daemon.modules.auth.errors import (
    InvalidAccountData,
    InvalidCredentials,
    PermissionDenied,
    Unauthenticated,
    WeakPassword,
)
from daemon.modules.auth.passwords import (
    check_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from daemon.modules.auth.policy import LAST_USED_TOUCH_SECONDS, PASSWORD_MAX_LENGTH, retry_after
from daemon.modules.auth.roles import Principal, PrincipalKind, Role
from daemon.modules.auth.users import SQL, User, set_password

if TYPE_CHECKING:
    from datetime import datetime

    from daemon.modules.auth.credential_cache import CredentialCache
    from daemon.modules.auth.policy import AuthPolicy
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

log = logging.getLogger("triaged.auth")

SESSION_TOKEN_PREFIX = "tgs_"
TOKEN_MAX_LENGTH = 200


def new_session_token() -> str:
    return SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    """The SHA-256 digest stored for a session token."""
    return hashlib.sha256(token.encode()).digest()


@attrs.frozen(kw_only=True)
class LoginResult:
    token: str  # the bearer token: shown once, never stored or logged
    expires_at: datetime
    user: User
    session_id: int


async def login(
    pool: Pool,
    email: str,
    password: str,
    *,
    policy: AuthPolicy,
    client_addr: str | None,
    request_id: str | None,
) -> LoginResult:
    """Check the credentials and open a session.

    Steps: reserve the attempt for the account and the address before anything else
    (:func:`throttle.attempt`: refused at once if either is blocked; waits while other
    attempts in flight could still block it); verify the password off the event loop (no
    database connection held meanwhile); then, in one transaction, either open the
    session, settle the attempt as a success (the account's earlier failures are
    forgotten), upgrade the hash if its parameters are outdated and audit ``auth.login``,
    or count the failure and audit ``auth.login_failed``. A correct password is never
    counted as a failure; a cancelled login (client gone) releases its reservation and
    counts nothing: its outcome was never told to anyone.

    Raises:
        LoginThrottled: blocked; ``retry_after`` says for how many seconds. The password
            is not checked. Also (retry after 1 s) when the attempts in flight were not
            decided within ``throttle.WAIT_SECONDS``.
        InvalidCredentials: unknown email, wrong password or disabled user (the same
            message for all three).
        InvalidAccountData: (field ``email``) it contains a control or invisible
            character (:func:`normalize_login_email`): no account has one. Nothing is
            counted.
    """
    email = normalize_login_email(email)
    context = AuditContext(actor=Actor.anonymous(), client_addr=client_addr, request_id=request_id)
    async with throttle.attempt(
        pool, email, address=client_addr, policy=policy, context=context
    ) as attempt:
        result = await _check_and_open(
            pool, attempt, email, password, policy=policy, context=context
        )
    if result is None:
        raise InvalidCredentials()
    return result


async def _check_and_open(
    pool: Pool,
    attempt: throttle.Attempt,
    email: str,
    password: str,
    *,
    policy: AuthPolicy,
    context: AuditContext,
) -> LoginResult | None:
    """:func:`login` within its reserved attempt: the session opened, or None (the
    failure counted and audited)."""
    client_addr, request_id = context.client_addr, context.request_id
    row = None
    if len(email) <= 320:
        async with pool.connection() as conn:
            await conn.set_autocommit(True)
            row = await (await conn.execute(SQL["get_login_user"], {"email": email})).fetchone()
    stored_hash = None if row is None else str(row[8])
    # Longer than any password the policy accepts: cannot match, but costs the same.
    valid = await verify_password(stored_hash, password[: PASSWORD_MAX_LENGTH + 1], policy)
    user = None if row is None else User.from_row(row)

    if user is None or not valid or not user.active:
        reason = "unknown_email" if user is None else "wrong_password" if not valid else "disabled"
        async with pool.transaction() as conn:
            failure = await throttle.fail(conn, attempt, policy)
            await record(
                conn,
                context,
                "auth.login_failed",
                target_type="user" if user else "account",
                target_id=user.id if user else attempt.account,
                details={
                    # What was typed, only if it looks like an email: a password pasted
                    # into the email field must not land in the append-only log.
                    "email": attempt.account if looks_like_email(email) else "(not an email)",
                    "reason": reason,
                    "failures": failure.failures,
                }
                | (
                    {"blocked_seconds": retry_after(failure.blocked_seconds)}
                    if failure.blocked_seconds
                    else {}
                ),
            )
        return None

    assert stored_hash is not None
    new_hash = await hash_password(password, policy) if needs_rehash(stored_hash, policy) else None
    token = new_session_token()
    async with pool.transaction() as conn:
        await throttle.succeed(conn, attempt)
        session = await (
            await conn.execute(
                SQL["insert_session"],
                {
                    "user_id": user.id,
                    "token_hash": token_hash(token),
                    "ttl": policy.session_ttl_seconds,
                    "client_addr": client_addr,
                },
            )
        ).fetchone()
        assert session is not None
        if new_hash is not None:
            await conn.execute(
                SQL["upgrade_password_hash"],
                {"id": user.id, "old_hash": stored_hash, "new_hash": new_hash},
            )
        await record(
            conn,
            AuditContext(
                actor=Actor(type=ActorType.USER, id=user.id),
                client_addr=client_addr,
                request_id=request_id,
            ),
            "auth.login",
            target_type="session",
            target_id=session[0],
            details={"rehashed": True} if new_hash is not None else None,
        )
    return LoginResult(token=token, expires_at=session[1], user=user, session_id=session[0])


async def authenticate(
    pool: Pool, token: str, *, cache: CredentialCache | None = None
) -> Principal:
    """The principal behind a bearer token: a session token or an API key.

    One statement in autocommit; it also records ``last_used_at`` (at most once a minute
    per token). Not audited (it runs on every request). With ``cache``, a token looked
    up lately is answered from it, without a round trip (see
    :mod:`daemon.modules.auth.credential_cache`: revocations still apply at once).

    Raises:
        Unauthenticated: malformed, unknown, expired or revoked token or key, or the
            session of a disabled user.
    """
    if not token or len(token) > TOKEN_MAX_LENGTH or not token.isascii():
        raise Unauthenticated()
    is_key = looks_like_api_key(token)
    if not is_key and not token.startswith(SESSION_TOKEN_PREFIX):
        raise Unauthenticated()
    digest = token_hash(token)  # key_hash() too: the SHA-256 of the whole token
    ticket = None
    if cache is not None:
        cached, ticket = await cache.lookup(digest)
        if cached is not None:
            return cached
    started = trio.current_time()
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        if is_key:
            found = await authenticate_api_key(conn, token)
        else:
            found = await _authenticate_session(conn, digest)
    if found is None:
        raise Unauthenticated()
    principal, lifetime = found
    if cache is not None:
        cache.store(ticket, digest, principal, started=started, lifetime=lifetime)
    return principal


async def _authenticate_session(
    conn: TrioConnection, digest: bytes
) -> tuple[Principal, float | None] | None:
    """The principal of a live session of an active user and the seconds it has left."""
    row = await (
        await conn.execute(
            SQL["authenticate_session"],
            {"token_hash": digest, "touch_after": LAST_USED_TOUCH_SECONDS},
        )
    ).fetchone()
    if row is None:
        return None
    session_id, user_id, role, email, expires_at, lifetime = row
    principal = Principal(
        kind=PrincipalKind.USER,
        id=user_id,
        role=Role(role),
        name=email,
        session_id=session_id,
        expires_at=expires_at,
    )
    return principal, lifetime


async def logout(pool: Pool, token: str, *, context: AuditContext) -> bool:
    """Revoke the session of ``token``; audits ``auth.logout``.

    Idempotent: False (and nothing audited) when the token is not a live session.
    """
    if not token.startswith(SESSION_TOKEN_PREFIX):
        return False
    async with pool.transaction() as conn:
        row = await (
            await conn.execute(SQL["revoke_session_by_hash"], {"token_hash": token_hash(token)})
        ).fetchone()
        if row is None:
            return False
        await record(conn, context, "auth.logout", target_type="session", target_id=row[0])
    return True


async def change_own_password(
    pool: Pool,
    principal: Principal,
    current_password: str,
    new_password: str,
    *,
    policy: AuthPolicy,
    context: AuditContext,
) -> int:
    """A user changes their own password: the current one is checked, the policy
    applied, and every other session of theirs revoked (the one in use stays).

    Checks of the current password are throttled like logins (same account and address
    counters): a stolen session cannot be used to guess the password at hashing speed.
    Audits ``user.password_changed``; returns the number of sessions revoked.

    Raises:
        PermissionDenied: the principal is an API key.
        LoginThrottled: too many wrong current passwords (or logins) lately.
        InvalidAccountData: (field ``current_password``) the current password is wrong.
            Not ``InvalidCredentials``: the caller is authenticated, their proof of
            knowing the password is what failed.
        InvalidAccountData: (field ``new_password``) the new one breaks the policy.
    """
    if principal.kind is not PrincipalKind.USER:
        raise PermissionDenied("only users have passwords")
    try:
        check_password(new_password, email=principal.name, policy=policy)
    except WeakPassword as exc:
        raise InvalidAccountData("new_password", "new_" + exc.message) from None
    async with pool.connection() as conn:
        row = await (await conn.execute(SQL["get_password_hash"], {"id": principal.id})).fetchone()
    if row is None:
        raise Unauthenticated()
    async with throttle.attempt(
        pool, principal.name, address=context.client_addr, policy=policy, context=context
    ) as attempt:
        right = await verify_password(
            str(row[0]), current_password[: PASSWORD_MAX_LENGTH + 1], policy
        )
        async with pool.transaction() as conn:
            if right:
                await throttle.succeed(conn, attempt)
            else:
                await throttle.fail(conn, attempt, policy)
    if not right:
        raise InvalidAccountData("current_password", "current_password: wrong password")
    return await set_password(
        pool,
        principal.id,
        new_password,
        policy=policy,
        context=context,
        keep_session_id=principal.session_id,
    )
