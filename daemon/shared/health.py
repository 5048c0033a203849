"""Liveness and readiness, as the process sees them.

Liveness is the event loop answering; it never looks at dependencies. Readiness means
"send me work": started, not draining, the database answering and its schema at the
version this code expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
import trio

from daemon.shared.db import migrate
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.shared.db.pool import Pool

READINESS_CHECK_TIMEOUT_SECONDS = 2.0


@dataclass
class HealthState:
    """Mutable process state read by the probes; written only by the supervisor.

    ``analyzer_status`` (set in processes that analyse documents) answers ``"ok"`` or
    ``"degraded: <why>"``; it is reported but never makes the process unready: with the
    model server away, documents wait and everything else works.
    """

    expected_schema_version: int
    started: bool = False
    draining: bool = False
    analyzer_status: Callable[[], str] | None = None


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str] = field(default_factory=dict)


async def check_readiness(state: HealthState, pool: Pool | None) -> Readiness:
    """Each readiness check as ``name -> "ok" | reason``; bounded by a short timeout."""
    checks = {
        "started": "ok" if state.started else "starting",
        "draining": "draining" if state.draining else "ok",
    }
    if pool is None:
        checks["database"] = "not connected"
    else:
        checks["database"], checks["migrations"] = await _database_checks(state, pool)
    ready = all(v == "ok" for v in checks.values())
    if state.analyzer_status is not None:
        checks["analyzer"] = state.analyzer_status()
    return Readiness(ready=ready, checks=checks)


async def _database_checks(state: HealthState, pool: Pool) -> tuple[str, str]:
    with trio.move_on_after(READINESS_CHECK_TIMEOUT_SECONDS):
        try:
            async with pool.connection(timeout=READINESS_CHECK_TIMEOUT_SECONDS) as conn:
                version = await migrate.current_version(conn)
        except DatabaseError as exc:
            return f"unavailable: {exc.message}", "unknown"
        except psycopg.Error as exc:  # the server went away mid-query
            return f"unavailable: {type(exc).__name__}", "unknown"
        if version < state.expected_schema_version:
            return "ok", f"schema at version {version}, expected {state.expected_schema_version}"
        return "ok", "ok"
    return f"no answer within {READINESS_CHECK_TIMEOUT_SECONDS:g}s", "unknown"
