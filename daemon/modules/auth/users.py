"""Users: create, read, list, update, delete, and set passwords.

Transactions: functions taking a ``conn`` run in the caller's transaction and never
commit (reads). Functions taking the ``pool`` own their transaction: they hash passwords
off the event loop *before* opening it, then write the change and its audit event in one
transaction, so both commit or neither does.

Emails (:mod:`daemon.modules.auth.emails`): every address is checked by
:func:`~daemon.modules.auth.emails.check_email` in :func:`insert_user`, every lookup
normalised by :func:`~daemon.modules.auth.emails.normalize_login_email`. So the address
``jos`` + U+00E9 typed in fullwidth letters, with ``e`` + U+0301, or in capitals reaches
the same account (capitals as far as the database's ``lower()`` folds accented letters:
its locale decides).

The last-admin rule: no change may leave the database without an active admin once it
had one. Every change that could (demote, disable, delete) takes one transaction-level
advisory lock first and then counts the *other* active admins in SQL; two concurrent
demotions of the last two admins are therefore serialised, and the second one sees the
first one's result and is refused with :class:`LastAdmin`.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

import attrs

from daemon.modules.audit import AuditContext, record
from daemon.modules.auth.emails import check_email, normalize_email
from daemon.modules.auth.errors import DuplicateEmail, InvalidAccountData, LastAdmin, UserNotFound
from daemon.modules.auth.passwords import check_password, hash_password
from daemon.modules.auth.roles import Role
from daemon.shared.db.queries import load_queries
from daemon.shared.pagination import Page, decode_cursor, fetch_limit, page_of

if TYPE_CHECKING:
    from datetime import datetime

    from daemon.modules.auth.policy import AuthPolicy
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

log = logging.getLogger("triaged.auth")

SQL = load_queries("daemon.modules.auth", "queries.sql")
DISPLAY_NAME_MAX_LENGTH = 200
MAX_LIST_LIMIT = 1000
ADMIN_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"triaged.auth.admins").digest()[:8], "big", signed=True
)


@attrs.frozen(kw_only=True)
class User:
    """A user as everyone but the password code sees it (no hash)."""

    id: int
    email: str
    display_name: str
    role: Role
    active: bool
    created_at: datetime
    updated_at: datetime
    password_changed_at: datetime

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> User:
        return cls(
            id=row[0],
            email=row[1],
            display_name=row[2],
            role=Role(row[3]),
            active=row[4],
            created_at=row[5],
            updated_at=row[6],
            password_changed_at=row[7],
        )


def parse_role(value: str | Role) -> Role:
    """Raises InvalidAccountData (field ``role``) for anything but admin/analyst/viewer."""
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidAccountData("role", f"role: must be one of {allowed}") from None


def check_display_name(name: str) -> str:
    name = name.strip()
    if len(name) > DISPLAY_NAME_MAX_LENGTH:
        raise InvalidAccountData(
            "display_name", f"display_name: at most {DISPLAY_NAME_MAX_LENGTH} characters"
        )
    return name


async def create_user(
    pool: Pool,
    *,
    email: str,
    password: str,
    role: Role | str,
    display_name: str = "",
    policy: AuthPolicy,
    context: AuditContext,
) -> User:
    """Create a user and audit ``user.created``, in one transaction.

    Raises:
        InvalidAccountData: a malformed email, role or display name.
        WeakPassword: the password breaks the policy.
        DuplicateEmail: a user with this email exists (compared ignoring case).
    """
    email = check_email(email)
    role = parse_role(role)
    display_name = check_display_name(display_name)
    check_password(password, email=email, policy=policy)
    password_hash = await hash_password(password, policy)
    async with pool.transaction() as conn:
        return await insert_user(
            conn,
            email=email,
            role=role,
            display_name=display_name,
            password_hash=password_hash,
            context=context,
        )


async def insert_user(
    conn: TrioConnection,
    *,
    email: str,
    role: Role,
    display_name: str,
    password_hash: str,
    context: AuditContext,
    details: dict[str, Any] | None = None,
) -> User:
    """Insert a user and its audit event in the caller's transaction. The email goes
    through :func:`check_email` here too (idempotent): every way of creating a user
    (the API, the CLI, the bootstrap and initial admin) stores one spelling.

    Raises:
        InvalidAccountData: (field ``email``) the email breaks :func:`check_email`.
        DuplicateEmail: the email is taken, ignoring case (the statement does not fail:
            the caller's transaction stays usable).
    """
    email = check_email(email)
    row = await (
        await conn.execute(
            SQL["insert_user"],
            {
                "email": email,
                "display_name": display_name,
                "role": role.value,
                "password_hash": password_hash,
            },
        )
    ).fetchone()
    if row is None:
        raise DuplicateEmail(f"a user with the email {email!r} already exists")
    user = User.from_row(row)
    await record(
        conn,
        context,
        "user.created",
        target_type="user",
        target_id=user.id,
        details={"email": user.email, "role": user.role.value, **(details or {})},
    )
    return user


async def get_user(conn: TrioConnection, user_id: int) -> User:
    """Raises UserNotFound."""
    row = await (await conn.execute(SQL["get_user"], {"id": user_id})).fetchone()
    if row is None:
        raise UserNotFound(f"no user with id {user_id}")
    return User.from_row(row)


async def get_user_by_email(conn: TrioConnection, email: str) -> User:
    """The user with this email in any spelling (:func:`normalize_email`), compared
    ignoring case. Raises UserNotFound."""
    email = normalize_email(email)
    row = await (await conn.execute(SQL["get_user_by_email"], {"email": email})).fetchone()
    if row is None:
        raise UserNotFound(f"no user with the email {email!r}")
    return User.from_row(row)


async def list_users(
    conn: TrioConnection,
    *,
    role: Role | None = None,
    active: bool | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[User]:
    """A page of users by id, oldest first; ``cursor`` is the previous page's
    ``next_cursor``. Read-only; runs in the caller's transaction.

    Raises:
        InvalidAccountData: ``limit`` outside 1..MAX_LIST_LIMIT.
        ValidationFailed: a malformed cursor.
    """
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidAccountData("limit", f"limit: must be between 1 and {MAX_LIST_LIMIT}")
    rows = await (
        await conn.execute(
            SQL["list_users"],
            {
                "role": None if role is None else role.value,
                "active": active,
                "after_id": decode_cursor(cursor),
                "limit": fetch_limit(limit),
            },
        )
    ).fetchall()
    return page_of([User.from_row(row) for row in rows], limit, key=lambda u: u.id)


async def update_user(
    pool: Pool,
    user_id: int,
    *,
    display_name: str | None = None,
    role: Role | str | None = None,
    active: bool | None = None,
    password: str | None = None,
    policy: AuthPolicy | None = None,
    context: AuditContext,
) -> User:
    """Change the given fields (None: unchanged), all in one transaction; idempotent
    (no change, no event), except that a given password is always set.

    Audits ``user.updated`` (display name), ``user.role_changed``, ``user.disabled`` (which
    also revokes all the user's sessions), ``user.enabled``, and ``user.password_changed``
    (an admin reset: revokes all the user's sessions; needs ``policy``), in the same
    transaction. The password is checked and hashed (off the event loop) before anything
    is written.

    Raises:
        UserNotFound, InvalidAccountData, WeakPassword.
        LastAdmin: the change would leave no active admin.
    """
    new_role = None if role is None else parse_role(role)
    new_name = None if display_name is None else check_display_name(display_name)
    new_hash = None
    if password is not None:
        if policy is None:
            raise TypeError("update_user(password=...) needs the policy")
        async with pool.connection() as conn:
            current = await get_user(conn, user_id)
        check_password(password, email=current.email, policy=policy)
        new_hash = await hash_password(password, policy)
    async with pool.transaction() as conn:
        before = await _lock_user(conn, user_id)
        after_role = new_role or before.role
        after_active = before.active if active is None else active
        after_name = before.display_name if new_name is None else new_name
        if new_hash is not None:
            await conn.execute(SQL["set_password_hash"], {"id": user_id, "password_hash": new_hash})
            revoked = await revoke_sessions(conn, user_id)
            await record(
                conn,
                context,
                "user.password_changed",
                target_type="user",
                target_id=user_id,
                details={"sessions_revoked": revoked, "reset": True},
            )
        if (after_role, after_active, after_name) == (
            before.role,
            before.active,
            before.display_name,
        ):
            if new_hash is None:
                return before
            return await get_user(conn, user_id)
        if (
            before.role is Role.ADMIN
            and before.active
            and (after_role is not Role.ADMIN or not after_active)
        ):
            await _refuse_last_admin(conn, before, "demoted or disabled")
        row = await (
            await conn.execute(
                SQL["update_user"],
                {
                    "id": user_id,
                    "display_name": after_name,
                    "role": after_role.value,
                    "active": after_active,
                },
            )
        ).fetchone()
        assert row is not None
        user = User.from_row(row)

        async def audit(action: str, **details: Any) -> None:
            await record(
                conn, context, action, target_type="user", target_id=user_id, details=details
            )

        if after_name != before.display_name:
            await audit("user.updated", display_name=[before.display_name, after_name])
        if after_role is not before.role:
            await audit("user.role_changed", role=[before.role.value, after_role.value])
        if before.active and not after_active:
            revoked = await revoke_sessions(conn, user_id)
            await audit("user.disabled", sessions_revoked=revoked)
        elif after_active and not before.active:
            await audit("user.enabled")
        return user


async def delete_user(pool: Pool, user_id: int, *, context: AuditContext) -> None:
    """Delete a user (their sessions go with them); audits ``user.deleted``.

    Audit events keep the user's id. Raises UserNotFound, LastAdmin.
    """
    async with pool.transaction() as conn:
        before = await _lock_user(conn, user_id)
        if before.role is Role.ADMIN and before.active:
            await _refuse_last_admin(conn, before, "deleted")
        await conn.execute(SQL["delete_user"], {"id": user_id})
        await record(
            conn,
            context,
            "user.deleted",
            target_type="user",
            target_id=user_id,
            details={"email": before.email, "role": before.role.value},
        )


async def set_password(
    pool: Pool,
    user_id: int,
    new_password: str,
    *,
    policy: AuthPolicy,
    context: AuditContext,
    keep_session_id: int | None = None,
) -> int:
    """Replace a user's password and revoke their sessions (all but ``keep_session_id``).

    For an admin reset or the CLI; a user changing their own password goes through
    :func:`daemon.modules.auth.sessions.change_own_password`. Audits
    ``user.password_changed``. Returns the number of sessions revoked.

    Raises:
        UserNotFound, WeakPassword.
    """
    async with pool.connection() as conn:
        user = await get_user(conn, user_id)
    check_password(new_password, email=user.email, policy=policy)
    password_hash = await hash_password(new_password, policy)
    async with pool.transaction() as conn:
        await _lock_user(conn, user_id)
        await conn.execute(
            SQL["set_password_hash"], {"id": user_id, "password_hash": password_hash}
        )
        revoked = await revoke_sessions(conn, user_id, except_session_id=keep_session_id)
        await record(
            conn,
            context,
            "user.password_changed",
            target_type="user",
            target_id=user_id,
            details={"sessions_revoked": revoked},
        )
    return revoked


async def revoke_sessions(
    conn: TrioConnection, user_id: int, *, except_session_id: int | None = None
) -> int:
    """Revoke the user's live sessions (but one) in the caller's transaction; how many."""
    rows = await (
        await conn.execute(
            SQL["revoke_user_sessions"], {"user_id": user_id, "except_id": except_session_id}
        )
    ).fetchall()
    return len(rows)


async def _lock_user(conn: TrioConnection, user_id: int) -> User:
    await conn.execute(SQL["admin_lock"], {"key": ADMIN_LOCK_KEY})
    row = await (await conn.execute(SQL["get_user_for_update"], {"id": user_id})).fetchone()
    if row is None:
        raise UserNotFound(f"no user with id {user_id}")
    return User.from_row(row)


async def _refuse_last_admin(conn: TrioConnection, user: User, what: str) -> None:
    row = await (await conn.execute(SQL["count_other_active_admins"], {"id": user.id})).fetchone()
    if row is None or row[0] == 0:
        raise LastAdmin(f"{user.email} is the last active admin and cannot be {what}")
