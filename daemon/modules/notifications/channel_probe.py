"""``POST /api/v1/notification-channels/{id}/test``: one message sent now, outside the
queue (an admin checking a channel wants the answer), bounded by the delivery timeout."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from daemon.modules.ingestion import FetchRefused
from daemon.modules.notifications.errors import ChannelNotFound, DeliveryFailed
from daemon.modules.notifications.messages import Notice
from daemon.modules.notifications.sending import send
from daemon.shared.db.queries import load_queries

if TYPE_CHECKING:
    from daemon.modules.notifications.sending import DeliveryOptions
    from daemon.shared.db.pool import Pool

SQL = load_queries("daemon.modules.notifications", "queries.sql")


async def send_test_message(
    pool: Pool, channel_id: int, options: DeliveryOptions, actor: str
) -> tuple[bool, str]:
    """(delivered, the reason when not). Raises ChannelNotFound."""
    async with pool.connection() as conn:
        row = await (await conn.execute(SQL["channel_for_send"], {"id": channel_id})).fetchone()
    if row is None:
        raise ChannelNotFound(f"no notification channel with id {channel_id}")
    _id, name, kind, config, secret = row
    notice = Notice(
        delivery_id=f"test-{uuid.uuid4()}",
        event_id=0,
        event_kind="test",
        actor=actor,
        at=datetime.now(UTC),
        detail={"channel": name},
        case_id=0,
        severity="low",
        status="open",
        level=0,
        sla_due_at=None,
        title="test message from triaged",
    )
    try:
        await send(kind, dict(config), secret, notice, options)
    except (DeliveryFailed, FetchRefused) as exc:
        return False, str(exc)[:300]
    return True, ""
