"""The first admin, from ``TRIAGED_BOOTSTRAP_ADMIN_EMAIL`` and ``..._PASSWORD``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from daemon.modules.audit import AuditContext
from daemon.modules.auth.passwords import check_email, check_password, hash_password
from daemon.modules.auth.policy import AuthPolicy
from daemon.modules.auth.roles import Role
from daemon.modules.auth.users import ADMIN_LOCK_KEY, SQL, User, insert_user

if TYPE_CHECKING:
    from daemon.shared.config import Settings
    from daemon.shared.db.pool import Pool

log = logging.getLogger("triaged.auth")


async def bootstrap_admin(pool: Pool, settings: Settings) -> User | None:
    """Create the configured admin if the database has no user at all; else do nothing.

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
    if settings.bootstrap_admin_email is None or settings.bootstrap_admin_password is None:
        return None
    async with pool.connection() as conn:
        row = await (await conn.execute(SQL["any_user"])).fetchone()
    if row is not None and row[0]:
        return None
    policy = AuthPolicy.from_settings(settings)
    email = check_email(settings.bootstrap_admin_email)
    password = settings.bootstrap_admin_password.get_secret_value()
    check_password(password, email=email, policy=policy)
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
            details={"via": "bootstrap"},
        )
    log.warning(
        "created the bootstrap admin %s (password from TRIAGED_BOOTSTRAP_ADMIN_PASSWORD); "
        "unset both variables now",
        user.email,
        extra={"action": "auth.bootstrap_admin", "user_id": user.id},
    )
    return user
