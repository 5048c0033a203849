"""The first admin: from ``TRIAGED_BOOTSTRAP_ADMIN_EMAIL`` and ``..._PASSWORD``, or
generated into ``TRIAGED_INITIAL_ADMIN_PASSWORD_FILE`` (what ``make run`` uses)."""

from __future__ import annotations

import logging
import os
import secrets
from typing import TYPE_CHECKING

import trio

from daemon.modules.audit import AuditContext
from daemon.modules.auth.emails import check_email
from daemon.modules.auth.passwords import check_password, hash_password
from daemon.modules.auth.roles import Role
from daemon.modules.auth.users import ADMIN_LOCK_KEY, SQL, User, insert_user

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from daemon.modules.auth.policy import AuthPolicy
    from daemon.shared.db.pool import Pool

log = logging.getLogger("triaged.auth")

INITIAL_ADMIN_EMAIL = "admin@triaged.localhost"  # .localhost: reserved, never routable


async def has_users(pool: Pool) -> bool:
    async with pool.connection() as conn:
        row = await (await conn.execute(SQL["any_user"])).fetchone()
    return bool(row and row[0])


async def bootstrap_admin(
    pool: Pool, email: str | None, password: str | None, policy: AuthPolicy
) -> User | None:
    """Create the configured admin (``TRIAGED_BOOTSTRAP_ADMIN_EMAIL`` and ``_PASSWORD``;
    None: not configured) if the database has no user at all; else do nothing.

    Idempotent and safe when several processes start at once: the check and the insert
    run in one transaction under the same advisory lock as every admin change, so one
    process creates the admin and the others find a user. Audited as ``user.created``
    (actor ``system``, details ``{"via": "bootstrap"}``). Logs the email, never the
    password. Returns the user created, or None.

    Raises:
        InvalidAccountData: the configured email is malformed.
        WeakPassword: the configured password breaks the policy (checked only when an
            admin is actually to be created).
    """
    if email is None or password is None:
        return None
    if await has_users(pool):
        return None
    email = check_email(email)
    check_password(password, email=email, policy=policy)
    user = await _create_first_admin(pool, email, password, policy, via="bootstrap")
    if user is not None:
        log.warning(
            "created the bootstrap admin %s (password from TRIAGED_BOOTSTRAP_ADMIN_PASSWORD); "
            "unset both variables now",
            user.email,
            extra={"action": "auth.bootstrap_admin", "user_id": user.id},
        )
    return user


async def initial_admin(pool: Pool, path: Path | None, policy: AuthPolicy) -> User | None:
    """With no user at all and ``path`` (``TRIAGED_INITIAL_ADMIN_PASSWORD_FILE``) set:
    create the admin ``admin@triaged.localhost`` with a random password written to
    ``path``, readable by
    this OS user only (mode 0600, replaced atomically). The file is written inside the
    transaction that creates the admin: no admin without its file; a commit that fails
    after the write leaves a file whose password matches nobody, replaced at the next
    start.

    The log names the file, never the password. Returns the user created, or None (a
    user exists, or no file is configured; then the log says how to create the first
    admin when there is none).
    """
    if await has_users(pool):
        return None
    if path is None:
        log.warning(
            "there is no user yet: create the first admin with `triaged user create --email "
            "YOU --role admin` (password on stdin), or set TRIAGED_BOOTSTRAP_ADMIN_EMAIL and "
            "TRIAGED_BOOTSTRAP_ADMIN_PASSWORD",
            extra={"action": "auth.no_users"},
        )
        return None
    password = secrets.token_urlsafe(max(18, policy.password_min_length))

    async def write_file() -> None:
        await trio.to_thread.run_sync(_write_secret_file, path, password + "\n")

    user = await _create_first_admin(
        pool, INITIAL_ADMIN_EMAIL, password, policy, via="initial", before_commit=write_file
    )
    if user is None:  # another process created the first user meanwhile
        return None
    log.warning(
        "created the first admin %s; its password is in %s (readable by this user only). "
        "Log in with POST /api/v1/auth/login, change the password with POST "
        "/api/v1/auth/password, then delete the file",
        user.email,
        path,
        extra={"action": "auth.initial_admin", "user_id": user.id, "path": str(path)},
    )
    return user


async def _create_first_admin(
    pool: Pool,
    email: str,
    password: str,
    policy: AuthPolicy,
    *,
    via: str,
    before_commit: Callable[[], Awaitable[None]] | None = None,
) -> User | None:
    """Insert the admin unless a user exists, under the admin lock; ``before_commit``
    runs inside the transaction once the insert is certain (if it fails, no admin)."""
    password_hash = await hash_password(password, policy)
    async with pool.transaction() as conn:
        await conn.execute(SQL["admin_lock"], {"key": ADMIN_LOCK_KEY})
        row = await (await conn.execute(SQL["any_user"])).fetchone()
        if row is not None and row[0]:
            return None
        user = await insert_user(
            conn,
            email=email,
            role=Role.ADMIN,
            display_name="",
            password_hash=password_hash,
            context=AuditContext.system(),
            details={"via": via},
        )
        if before_commit is not None:
            await before_commit()
        return user


def _write_secret_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
