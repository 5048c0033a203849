"""Deleting what authentication no longer needs: long-expired sessions and idle
login-throttle counters. Idempotent; several processes may run it at once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs
import trio

from daemon.modules.auth.users import SQL

if TYPE_CHECKING:
    from daemon.modules.auth.policy import AuthPolicy
    from daemon.shared.db.pool import Pool

log = logging.getLogger("triaged.auth")

# Expired sessions are kept this long (who logged in from where, next to the audit log).
SESSION_KEEP_SECONDS = 7 * 86_400.0
PRUNE_BATCH = 1000


@attrs.frozen
class Pruned:
    sessions: int
    throttle_rows: int


async def prune(
    pool: Pool, policy: AuthPolicy, *, keep_seconds: float = SESSION_KEEP_SECONDS
) -> Pruned:
    """Delete sessions expired more than ``keep_seconds`` ago (in batches, each its own
    transaction) and throttle counters idle for longer than their window that block
    nobody. Returns how many rows went."""
    sessions = 0
    while True:
        async with pool.transaction() as conn:
            cursor = await conn.execute(
                SQL["prune_sessions"], {"keep": keep_seconds, "batch": PRUNE_BATCH}
            )
            deleted = cursor.rowcount
        sessions += deleted
        if deleted < PRUNE_BATCH:
            break
        await trio.lowlevel.checkpoint()
    window = max(policy.account_throttle.window_seconds, policy.address_throttle.window_seconds)
    async with pool.transaction() as conn:
        throttle_rows = (
            await conn.execute(SQL["prune_login_throttle"], {"window": window})
        ).rowcount
    if sessions or throttle_rows:
        log.info(
            "pruned %d expired session(s) and %d idle login throttle counter(s)",
            sessions,
            throttle_rows,
            extra={"action": "auth.pruned", "sessions": sessions, "throttle_rows": throttle_rows},
        )
    return Pruned(sessions=sessions, throttle_rows=throttle_rows)
