"""The schedules' statements: the only module running SQL on ``schedules`` and
``schedule_fires`` (the queries are in ``schedule_queries.sql``).

Functions taking a connection run in the caller's transaction and never commit; those
taking a pool own their transaction and say so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import attrs
import trio
import trio.lowlevel
from psycopg.types.json import Jsonb

from daemon.queue.enqueue import enqueue
from daemon.queue.schedule_timing import (
    SLOT_KEY,
    InvalidSchedule,
    Schedule,
    ScheduleNotFound,
    ScheduleRecord,
    SlotRange,
)
from daemon.shared.db.queries import load_queries

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

SQL = load_queries("daemon.queue", "schedule_queries.sql")


# -- the database ------------------------------------------------------------------------


async def save_schedule(conn: TrioConnection, schedule: Schedule) -> bool:
    """Create or replace the schedule named ``schedule.name``; True when created.

    Declarative: the stored definition becomes exactly ``schedule``. Its slots restart
    from now (``active_since``) only when the timing changed or it was enabled again.
    Runs in the caller's transaction.
    """
    row = await (
        await conn.execute(
            SQL["upsert_schedule"],
            _definition(schedule),
        )
    ).fetchone()
    assert row is not None
    return bool(row[0])


async def set_enabled(conn: TrioConnection, name: str, enabled: bool) -> None:
    """Enable or disable a schedule (idempotent). Enabling a disabled schedule restarts
    its slots from now: those missed while disabled never fire. Caller's transaction.

    Raises:
        ScheduleNotFound: no schedule has that name.
    """
    cursor = await conn.execute(SQL["set_enabled"], {"name": name, "enabled": enabled})
    if await cursor.fetchone() is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")


async def delete_schedule(conn: TrioConnection, name: str) -> None:
    """Delete a schedule and its fire records; its jobs stay. Caller's transaction.

    Raises:
        ScheduleNotFound: no schedule has that name.
    """
    cursor = await conn.execute(SQL["delete_schedule"], {"name": name})
    if await cursor.fetchone() is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")


async def list_schedules(
    conn: TrioConnection,
    *,
    enabled_only: bool = False,
    on_invalid: Callable[[str, InvalidSchedule], None] | None = None,
) -> list[ScheduleRecord]:
    """Every schedule (or the enabled ones), by name.

    A stored row that is not a valid definition (written by hand, or a timezone this
    host does not know) is passed to ``on_invalid`` and left out; without it, raised.
    """
    rows = await (
        await conn.execute(SQL["list_schedules"], {"enabled_only": enabled_only})
    ).fetchall()
    records = []
    for row in rows:
        try:
            records.append(_record_from_row(row))
        except InvalidSchedule as exc:
            if on_invalid is None:
                raise
            on_invalid(row[0], exc)
    return records


def _record_from_row(row: tuple[Any, ...]) -> ScheduleRecord:
    (
        name,
        cron,
        interval,
        timezone,
        queue,
        payload,
        enabled,
        active_since,
        last_slot,
        last_fired_at,
        last_job_id,
        skipped_through,
        declared,
        retired_at,
    ) = row
    schedule = Schedule(
        name=name,
        cron=cron,
        interval=interval,
        timezone=timezone,
        queue=queue,
        payload=payload,
        enabled=enabled,
    )
    return ScheduleRecord(
        schedule=schedule,
        active_since=active_since,
        last_slot=last_slot,
        last_fired_at=last_fired_at,
        last_job_id=last_job_id,
        skipped_through=skipped_through,
        declared=declared,
        retired_at=retired_at,
    )


class FireOutcome(StrEnum):
    FIRED = "fired"  # this call enqueued the slot's job
    HANDLED = "handled"  # the slot (or a later one) was already fired or skipped
    STALE = "stale"  # deleted, disabled or redefined since the caller read it


@attrs.frozen
class FireResult:
    outcome: FireOutcome
    job_id: int | None = None  # FIRED: the job enqueued, and its queue
    queue: str | None = None


async def fire_slot(pool: Pool, name: str, active_since: datetime, slot: datetime) -> FireResult:
    """Fire one slot of schedule ``name``, at most once across all processes.

    Owns its transaction: the fire record, the job and the schedule's ``last_*`` commit
    together or not at all (cancelled or failed, the slot stays open to any process).
    ``active_since`` is the definition the caller computed ``slot`` from: a schedule
    redefined, disabled or deleted since gives ``STALE`` and fires nothing.
    """
    params = {"name": name, "active_since": active_since, "slot": slot}
    async with pool.transaction() as conn:
        row = await (await conn.execute(SQL["claim_slot"], params)).fetchone()
        if row is None:
            return FireResult(FireOutcome.STALE)
        enabled, current_since, queue, payload, fired = row
        if not enabled or current_since != active_since:
            return FireResult(FireOutcome.STALE)
        if not fired:
            return FireResult(FireOutcome.HANDLED)
        marker = {"name": name, "slot": slot.astimezone(UTC).isoformat()}
        job = await enqueue(conn, queue, {**payload, SLOT_KEY: marker})
        await conn.execute(SQL["record_fire"], {**params, "job_id": job.id})
    return FireResult(FireOutcome.FIRED, job.id, queue)


async def skip_missed(
    pool: Pool, schedule: Schedule, active_since: datetime, cutoff: datetime
) -> SlotRange | None:
    """Mark the unfired slots up to ``cutoff`` skipped; the slots this call skipped.

    Owns its transaction, under the schedule's row lock: of several processes, the first
    skips the range and gets it, the others get None. None too when the schedule was
    deleted, disabled or redefined since ``active_since``.
    """
    async with pool.transaction() as conn:
        row = await (await conn.execute(SQL["lock_schedule"], {"name": schedule.name})).fetchone()
        if row is None or not row[0] or row[1] != active_since:
            return None
        skipped = schedule.slot_range(row[2], cutoff)
        if skipped is not None:
            await conn.execute(SQL["record_skip"], {"name": schedule.name, "through": cutoff})
    return skipped


async def prune_fires(pool: Pool, keep_seconds: float, batch: int = 1000) -> int:
    """Delete fire records older than ``keep_seconds``, a batch per transaction; the
    number deleted (0 when another process is pruning)."""
    total = 0
    while True:
        async with pool.transaction() as conn:
            locked = await (await conn.execute(SQL["try_prune_lock"])).fetchone()
            if not locked or not locked[0]:
                return total
            cursor = await conn.execute(
                SQL["prune_fires"], {"keep_seconds": keep_seconds, "limit": batch}
            )
            deleted = cursor.rowcount
        total += deleted
        if deleted < batch:
            return total
        await trio.lowlevel.checkpoint()


# -- declared schedules (see daemon.queue.declared_schedules) ------------------------------


@attrs.frozen(kw_only=True)
class DeclaredRow:
    """A stored row a sync of declared schedules may touch."""

    name: str
    declared: bool
    timing: tuple[str | None, float | None, str]  # (cron, interval, timezone)
    queue: str
    payload: dict[str, Any]
    declared_timing: tuple[str | None, float | None, str | None]  # the last one declared
    retired_at: datetime | None


def timing_of(schedule: Schedule) -> tuple[str | None, float | None, str]:
    """A definition's timing as stored: (cron, interval seconds, timezone)."""
    return (schedule.cron, schedule.interval, schedule.timezone)


async def lock_declared_sync(conn: TrioConnection) -> None:
    """Take the transaction-level lock that serializes syncs of declared schedules."""
    await conn.execute(SQL["lock_declared_sync"])


async def declared_rows(conn: TrioConnection, names: Sequence[str]) -> dict[str, DeclaredRow]:
    """The declared rows and the rows holding ``names``, locked until the transaction ends."""
    cursor = await conn.execute(SQL["declared_rows"], {"names": list(names)})
    rows = {}
    for row in await cursor.fetchall():
        (name, declared, cron, interval, timezone, queue, payload, d_cron, d_interval, d_tz,
         retired_at) = row  # fmt: skip
        rows[name] = DeclaredRow(
            name=name,
            declared=declared,
            timing=(cron, interval, timezone),
            queue=queue,
            payload=payload,
            declared_timing=(d_cron, d_interval, d_tz),
            retired_at=retired_at,
        )
    return rows


async def insert_declared(conn: TrioConnection, schedule: Schedule) -> None:
    """Insert a newly declared schedule (its timing recorded as the declared one)."""
    await conn.execute(
        SQL["insert_declared"],
        _definition(schedule),
    )


async def update_declared(
    conn: TrioConnection,
    schedule: Schedule,
    timing: tuple[str | None, float | None, str],
) -> None:
    """Apply ``schedule``'s queue and payload, store ``timing`` (the code's or the one an
    operator set), record ``schedule``'s timing as the last declared, and un-retire."""
    cron, interval, timezone = timing
    await conn.execute(
        SQL["update_declared"],
        {
            "name": schedule.name,
            "queue": schedule.queue,
            "payload": Jsonb(dict(schedule.payload)),
            "cron": cron,
            "interval": interval,
            "timezone": timezone,
            "declared_cron": schedule.cron,
            "declared_interval": schedule.interval,
            "declared_timezone": schedule.timezone,
        },
    )


async def retire_declared(conn: TrioConnection, names: Sequence[str]) -> list[str]:
    """Disable the declared schedules ``names`` not yet retired; the names retired now."""
    if not names:
        return []
    cursor = await conn.execute(SQL["retire_declared"], {"names": list(names)})
    return [row[0] for row in await cursor.fetchall()]


def _definition(schedule: Schedule) -> dict[str, Any]:
    """The parameters of a statement that stores ``schedule``'s whole definition."""
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "interval": schedule.interval,
        "timezone": schedule.timezone,
        "queue": schedule.queue,
        "payload": Jsonb(dict(schedule.payload)),
        "enabled": schedule.enabled,
    }
