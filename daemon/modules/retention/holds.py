"""Legal holds: while a hold stands, its target and what the target depends on are never
purged (see :mod:`daemon.modules.retention.purge` for what "depends on" covers).

Placing a hold takes the retention lock exclusively, so it waits for a purge batch in
flight and every later batch sees it: a hold that returned is never outrun by the purge.
A hold is placed only on a document or case that exists (a purged one cannot be held
back): the target is read ``FOR KEY SHARE``, so a deletion in flight that does not take
the retention lock (an admin's delete, a case going with its document) is waited for
and the hold refused if the target is gone; a deletion that comes after waits for the
hold and is refused by the legal-hold trigger. Placing and releasing are audited in the
same transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from daemon.modules.audit import record
from daemon.modules.retention.errors import HoldAlreadyReleased, HoldNotFound
from daemon.shared.db.queries import load_queries
from daemon.shared.errors import ValidationFailed
from daemon.shared.pagination import Page, decode_cursor, fetch_limit, page_of

if TYPE_CHECKING:
    from datetime import datetime

    from daemon.modules.audit import AuditContext
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

SQL = load_queries("daemon.modules.retention", "queries.sql")

TARGET_TYPES = ("document", "case")


@attrs.frozen(kw_only=True)
class Hold:
    id: int
    target_type: str
    target_id: int
    reason: str
    created_by: str | None
    created_at: datetime
    released_at: datetime | None
    released_by: str | None
    release_reason: str | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Hold:
        (id_, target_type, target_id, reason, created_by, created_at, released_at,
         released_by, release_reason) = row  # fmt: skip
        return cls(
            id=id_,
            target_type=target_type,
            target_id=target_id,
            reason=reason,
            created_by=created_by,
            created_at=created_at,
            released_at=released_at,
            released_by=released_by,
            release_reason=release_reason,
        )


def _principal(context: AuditContext) -> str:
    actor = context.actor
    return actor.type.value if actor.id is None else f"{actor.type.value}:{actor.id}"


def _check_reason(reason: str, field: str) -> str:
    text = reason.strip()
    if not 1 <= len(text) <= 2000:
        raise ValidationFailed([{"field": field, "message": "must be 1 to 2000 characters"}])
    return text


async def place_hold(
    pool: Pool, *, target_type: str, target_id: int, reason: str, context: AuditContext
) -> Hold:
    """Put a hold on a document or a case; its own transaction (audited).

    Raises:
        ValidationFailed: an unknown target type, no such target, an empty reason.
    """
    if target_type not in TARGET_TYPES:
        raise ValidationFailed(
            [{"field": "target_type", "message": "must be 'document' or 'case'"}]
        )
    reason = _check_reason(reason, "reason")
    async with pool.transaction() as conn:
        await conn.execute(SQL["lock_holds"])
        query = SQL["document_exists"] if target_type == "document" else SQL["case_exists"]
        if await (await conn.execute(query, {"id": target_id})).fetchone() is None:
            raise ValidationFailed(
                [{"field": "target_id", "message": f"no {target_type} with id {target_id}"}]
            )
        row = await (
            await conn.execute(
                SQL["insert_hold"],
                {
                    "target_type": target_type,
                    "target_id": target_id,
                    "reason": reason,
                    "created_by": _principal(context),
                },
            )
        ).fetchone()
        assert row is not None
        hold = Hold.from_row(row)
        await record(
            conn,
            context,
            "legal_hold.placed",
            target_type="legal_hold",
            target_id=hold.id,
            details={"target_type": target_type, "target_id": target_id, "reason": reason},
        )
    return hold


async def release_hold(pool: Pool, hold_id: int, *, reason: str, context: AuditContext) -> Hold:
    """Release a standing hold with a reason; its own transaction (audited). The data it
    kept goes at the next purge run if its period has passed.

    Raises:
        HoldNotFound, HoldAlreadyReleased, ValidationFailed (an empty reason).
    """
    reason = _check_reason(reason, "reason")
    async with pool.transaction() as conn:
        row = await (
            await conn.execute(
                SQL["release_hold"],
                {"id": hold_id, "reason": reason, "released_by": _principal(context)},
            )
        ).fetchone()
        if row is None:
            await get_hold(conn, hold_id)  # raises HoldNotFound if there is none
            raise HoldAlreadyReleased(f"legal hold {hold_id} is already released")
        hold = Hold.from_row(row)
        await record(
            conn,
            context,
            "legal_hold.released",
            target_type="legal_hold",
            target_id=hold.id,
            details={
                "target_type": hold.target_type,
                "target_id": hold.target_id,
                "reason": reason,
            },
        )
    return hold


async def get_hold(conn: TrioConnection, hold_id: int) -> Hold:
    """Raises HoldNotFound."""
    row = await (await conn.execute(SQL["get_hold"], {"id": hold_id})).fetchone()
    if row is None:
        raise HoldNotFound(f"no legal hold with id {hold_id}")
    return Hold.from_row(row)


async def list_holds(
    conn: TrioConnection,
    *,
    include_released: bool = False,
    target_type: str | None = None,
    target_id: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Hold]:
    """Holds newest first (standing ones only unless ``include_released``). Read-only.

    Raises:
        ValidationFailed: a malformed cursor.
    """
    rows = await (
        await conn.execute(
            SQL["list_holds"],
            {
                "include_released": include_released,
                "target_type": target_type,
                "target_id": target_id,
                "before_id": decode_cursor(cursor),
                "limit": fetch_limit(limit),
            },
            prepare=False,
        )
    ).fetchall()
    return page_of([Hold.from_row(r) for r in rows], limit, key=lambda h: h.id)
