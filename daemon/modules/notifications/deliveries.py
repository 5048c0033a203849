"""One delivery, as its job runs it: load, send, record the outcome.

A delivery (a row of ``notification_deliveries``, created with its job by the trigger on
``case_events``) has a stable id, its ``webhook-id``: every retry sends the same id, so
a receiver deduplicates. The send happens outside any transaction (a slow receiver holds
no connection); the outcome is recorded after it. A crash between a send and its record
repeats the send on the job's next attempt: a delivery may repeat, never vanish.

Outcome recording is idempotent: only a pending delivery becomes delivered or failed,
and only that transition appends the case's ``notified`` event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from daemon.modules.cases import record_case_event
from daemon.modules.ingestion import FetchRefused
from daemon.modules.notifications.errors import DeliveryFailed
from daemon.modules.notifications.messages import Notice
from daemon.modules.notifications.sending import DeliveryOptions, send
from daemon.queue import Backoff
from daemon.shared.db.queries import load_queries

if TYPE_CHECKING:
    from daemon.shared.db.pool import Pool

SQL = load_queries("daemon.modules.notifications", "queries.sql")
QUEUE = "notifications.deliver"


@attrs.frozen(kw_only=True)
class Outcome:
    """``delivered``, ``failed`` (for good, recorded), ``retry`` (after ``delay``
    seconds) or ``gone`` (the delivery, its channel or its case no longer exists, or it
    was finished before)."""

    status: str
    delay: float = 0.0
    reason: str = ""


async def deliver(pool: Pool, delivery_id: str, options: DeliveryOptions) -> Outcome:
    """Run one attempt of a delivery (see the module docstring). Cancelled during the
    send, nothing is recorded and the job's retry sends again."""
    async with pool.connection() as conn:
        row = await (await conn.execute(SQL["delivery_to_send"], {"id": delivery_id})).fetchone()
    if row is None:
        return Outcome(status="gone")
    (
        did,
        status,
        attempts,
        event_id,
        event_kind,
        case_id,
        _channel_id,
        channel_name,
        kind,
        config,
        secret,
        actor,
        at,
        detail,
        severity,
        case_status,
        level,
        sla_due_at,
        title,
    ) = row
    if status != "pending":
        return Outcome(status="gone")
    notice = Notice(
        delivery_id=did,
        event_id=event_id,
        event_kind=event_kind,
        actor=actor,
        at=at,
        detail=dict(detail),
        case_id=case_id,
        severity=severity,
        status=case_status,
        level=level,
        sla_due_at=sla_due_at,
        title=title,
    )
    base = {
        "delivery_id": did,
        "channel": channel_name,
        "channel_kind": kind,
        "event_id": event_id,
        "event_kind": event_kind,
    }
    try:
        await send(kind, dict(config), secret, notice, options)
    except FetchRefused as exc:
        return await _finish_failed(pool, did, case_id, base, str(exc)[:300])
    except DeliveryFailed as exc:
        reason = str(exc)[:300]
        if exc.permanent or attempts + 1 >= options.max_attempts:
            return await _finish_failed(pool, did, case_id, base, reason)
        async with pool.transaction() as conn:
            await conn.execute(SQL["note_attempt"], {"id": did, "error": reason})
        backoff = Backoff(
            base_seconds=options.backoff_base_seconds, max_seconds=options.backoff_max_seconds
        )
        return Outcome(status="retry", delay=backoff.delay(attempts + 1), reason=reason)
    async with pool.transaction() as conn:
        done = await (
            await conn.execute(
                SQL["finish_delivery"], {"id": did, "status": "delivered", "error": None}
            )
        ).fetchone()
        if done is not None:
            await record_case_event(
                conn,
                case_id,
                "notified",
                "system",
                {**base, "outcome": "delivered", "attempts": attempts + 1},
            )
    return Outcome(status="delivered")


async def _finish_failed(
    pool: Pool, did: str, case_id: int, base: dict[str, Any], reason: str
) -> Outcome:
    async with pool.transaction() as conn:
        done = await (
            await conn.execute(
                SQL["finish_delivery"], {"id": did, "status": "failed", "error": reason}
            )
        ).fetchone()
        if done is not None:
            await record_case_event(
                conn, case_id, "notified", "system", {**base, "outcome": "failed", "reason": reason}
            )
    return Outcome(status="failed", reason=reason)
