"""Escalation and delivery figures for ``/metrics``, read from the database (shared by
every process, so any one scrape sees them all). Labels are bounded: severity (4),
level (the policy's at most 20), channel kind (2), delivery status (3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.shared.db.queries import load_queries

if TYPE_CHECKING:
    from daemon.shared.db.psycopg_trio import TrioConnection

SQL = load_queries("daemon.modules.notifications", "queries.sql")


async def notification_counts(
    conn: TrioConnection,
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, str], int]]:
    """Escalations fired by (severity, level); deliveries by (channel kind, status)."""
    escalations = {
        (str(severity), int(level)): int(count)
        for severity, level, count in await (
            await conn.execute(SQL["escalation_counts"])
        ).fetchall()
    }
    deliveries = {
        (str(kind), str(status)): int(count)
        for kind, status, count in await (await conn.execute(SQL["delivery_counts"])).fetchall()
    }
    return escalations, deliveries
