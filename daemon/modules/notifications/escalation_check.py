"""The escalation check: brings every due case to the level its policy says, once.

Run as the job of a declared schedule. Each round takes a batch of due cases with
``FOR UPDATE SKIP LOCKED`` (``cases_escalation_due``: ``escalation_due_at <= now()``,
open cases only), so checks running in several processes at once share the work and
never take the same case. Per case, in the batch's transaction: the level rises (to the
level it should have reached: a case that came due while the service was down jumps,
with one ``escalated`` event for the level reached, not one per skipped level), the
level is claimed in ``case_escalations`` (primary key case, cycle, level: a level fires
once per ladder cycle whatever crashes or races happen), the case is reassigned if the
level says so, the next due time is set (NULL at the top) and the ``escalated`` event
recorded; its notifications are enqueued by the trigger on ``case_events`` in the same
transaction. A crash before commit changes nothing; the next check does it again.

Acknowledged and resolved cases have no due time (the cases module clears it) and are
never taken; a reopened case gets a new due time at level 0 and, being one cycle later
(its count of ``reopened`` events), climbs its ladder again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs

from daemon.modules.cases import record_case_event
from daemon.modules.notifications.escalation_policy import next_step
from daemon.shared.db.queries import load_queries

if TYPE_CHECKING:
    from daemon.modules.notifications.escalation_policy import EscalationPolicy
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

log = logging.getLogger("triaged.notifications.escalation")
SQL = load_queries("daemon.modules.notifications", "queries.sql")
BATCH_SIZE = 100
MAX_ROUNDS = 1000  # at most this many batches per run; the next run takes the rest


@attrs.frozen(kw_only=True)
class CheckReport:
    """What one run did: cases looked at, levels fired, cases reassigned."""

    examined: int = 0
    escalated: int = 0
    reassigned: int = 0


async def run_escalation_check(
    pool: Pool, policy: EscalationPolicy, *, batch_size: int = BATCH_SIZE
) -> CheckReport:
    """Escalate every due case (see the module docstring). Idempotent; one transaction
    per batch; cancelled, the batch in flight rolls back."""
    examined = escalated = reassigned = 0
    for _ in range(MAX_ROUNDS):
        async with pool.transaction() as conn:
            rows = await (await conn.execute(SQL["due_cases"], {"limit": batch_size})).fetchall()
            for case_id, severity, level, due_at, now in rows:
                fired, moved = await _escalate(conn, policy, case_id, severity, level, due_at, now)
                escalated += fired
                reassigned += moved
        examined += len(rows)
        if len(rows) < batch_size:
            break
    return CheckReport(examined=examined, escalated=escalated, reassigned=reassigned)


async def _escalate(
    conn: TrioConnection,
    policy: EscalationPolicy,
    case_id: int,
    severity: str,
    level: int,
    due_at: Any,
    now: Any,
) -> tuple[int, int]:
    step = next_step(policy, severity, level, due_at, now)
    fired = moved = 0
    if step.fired is not None:
        cycle_row = await (await conn.execute(SQL["ladder_cycle"], {"case_id": case_id})).fetchone()
        cycle = int(cycle_row[0]) if cycle_row else 0
        claimed = await (
            await conn.execute(
                SQL["claim_level"], {"case_id": case_id, "cycle": cycle, "level": step.level}
            )
        ).fetchone()
        if claimed is None:  # fired before in this cycle: never twice; only move on
            log.warning(
                "escalation level fired before",
                extra={"case_id": case_id, "cycle": cycle, "level": step.level},
            )
        else:
            event_id, _ = await record_case_event(
                conn,
                case_id,
                "escalated",
                "system",
                {
                    "level": step.level,
                    "from_level": level,
                    "severity": severity,
                    "channels": list(step.fired.channels),
                    "assign_to": step.fired.assign_to,
                    "skipped_levels": list(range(level + 1, step.level)),
                    "next_due_at": None
                    if step.next_due_at is None
                    else step.next_due_at.isoformat(),
                },
            )
            await conn.execute(
                SQL["note_level_event"],
                {"case_id": case_id, "cycle": cycle, "level": step.level, "event_id": event_id},
            )
            fired = 1
            if step.fired.assign_to:
                moved = await _reassign(conn, case_id, step.fired.assign_to)
    await conn.execute(
        SQL["move_ladder"],
        {"case_id": case_id, "level": step.level, "next_due_at": step.next_due_at},
    )
    return fired, moved


async def _reassign(conn: TrioConnection, case_id: int, email: str) -> int:
    user = await (await conn.execute(SQL["assignee_by_email"], {"email": email})).fetchone()
    user_id = None if user is None else int(user[0])
    await conn.execute(SQL["reassign"], {"case_id": case_id, "label": email, "user_id": user_id})
    await record_case_event(
        conn,
        case_id,
        "assigned",
        "system",
        {"assignee": email, "user_id": user_id, "by": "escalation"},
    )
    return 1
