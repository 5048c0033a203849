"""The scheduler: fires due slots of schedules, each once however many processes run.

Design note
-----------
Every worker process runs a :class:`CronScheduler` (the supervisor's scheduler group);
there is no leader. Each wakes at the next due slot of any enabled schedule and fires it
in **one transaction**::

    claim_slot   lock the schedule row; INSERT INTO schedule_fires (schedule, slot)
                 ON CONFLICT DO NOTHING, only if the schedule is enabled, still has the
                 definition the slot was computed from, and has neither fired nor
                 skipped this slot or a later one
    enqueue      only when the fire row was inserted; the payload carries the slot
    record_fire  schedules.last_slot / last_fired_at / last_job_id

The row lock serializes the processes on one schedule, the ``last_slot`` check makes a
slot at or before the last one fired unfireable (even after its fire row was pruned),
and the primary key of ``schedule_fires`` is a second guard. A process that loses the
race finds the slot handled and moves on. Committed, the job exists with its fire
record; rolled back (an error, a cancellation, a crash), neither does, and the slot is
still open to every process.

Slot timing and catch-up rules are in :mod:`daemon.queue.schedules`.

Failures
  A database error aborts the pass: it is logged, the scheduler backs off (0.5 s
  doubling to 10 s), re-reads the schedules and goes on. Nothing is lost: a slot not
  fired stays open while it is inside the catch-up window.

``schedule_fires`` rows older than a day are pruned (one process at a time, in
batches). The clock is the process's own; hosts must keep time (NTP).
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import attrs
import psycopg
import trio
import trio.lowlevel
from psycopg.types.json import Jsonb

from daemon.queue.enqueue import enqueue
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

from daemon.queue.schedules import (
    MIN_CATCH_UP_SECONDS,
    SLOT_KEY,
    SQL,
    InvalidSchedule,
    Schedule,
    ScheduleNotFound,
    ScheduleRecord,
    SlotRange,
    plan_slots,
)

log = logging.getLogger("triaged.queue.schedules")
_INFO_PERIOD = timedelta(minutes=1)  # fires at most this often are logged at INFO


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
            {
                "name": schedule.name,
                "cron": schedule.cron,
                "interval": schedule.interval,
                "timezone": schedule.timezone,
                "queue": schedule.queue,
                "payload": Jsonb(dict(schedule.payload)),
                "enabled": schedule.enabled,
            },
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


# -- the service -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SchedulerOptions:
    catch_up_seconds: float = 300.0
    reload_interval: float = 2.0  # schedules are re-read at least this often
    batch: int = 100  # slots fired per schedule before the others get a turn
    fires_retention_seconds: float = 86_400.0
    prune_interval: float = 300.0


@attrs.define
class _Tracked:
    schedule: Schedule
    active_since: datetime
    handled_until: datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CronScheduler:
    """Fires the due slots of every enabled schedule (a Service; see the module docstring).

    ``clock`` gives the current time (aware); tests inject one. Cancellation is safe at
    any point: an unfinished fire rolls back.
    """

    name = "cron"

    def __init__(
        self,
        pool: Pool,
        options: SchedulerOptions | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.pool = pool
        self.options = options or SchedulerOptions()
        self.clock = clock
        self._tracked: dict[str, _Tracked] = {}
        self._invalid: dict[str, str] = {}
        self._stop = trio.Event()
        self._reload_at = -math.inf
        self._prune_at = -math.inf

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        failures = 0
        while not self._stop.is_set():
            try:
                wait = await self._pass()
                failures = 0
            except (psycopg.Error, DatabaseError) as exc:
                failures += 1
                wait = min(0.5 * 2 ** (failures - 1), 10.0)
                self._reload_at = -math.inf
                log.warning(
                    "schedule pass failed, retrying in %.1fs: %s",
                    wait,
                    exc,
                    extra={"action": "schedule.pass_failed"},
                )
            with trio.move_on_after(wait):
                await self._stop.wait()

    async def _pass(self) -> float:
        """Reload if due, fire what is due, prune if due; seconds until the next pass."""
        if trio.current_time() >= self._reload_at:
            await self._reload()
            self._reload_at = trio.current_time() + self.options.reload_interval
        more = False
        for tracked in list(self._tracked.values()):
            if self._stop.is_set():
                return 0.0
            more = await self._fire_due(tracked) or more
        if trio.current_time() >= self._prune_at:
            self._prune_at = trio.current_time() + self.options.prune_interval
            pruned = await prune_fires(self.pool, self.options.fires_retention_seconds)
            if pruned:
                log.debug(
                    "pruned %d schedule fire record(s)",
                    pruned,
                    extra={"action": "schedule.pruned", "count": pruned},
                )
        return 0.0 if more else self._seconds_to_next()

    async def _reload(self) -> None:
        async with self.pool.connection() as conn:
            records = await list_schedules(conn, enabled_only=True, on_invalid=self._report_invalid)
        tracked = {}
        for record in records:
            name = record.schedule.name
            handled = record.handled_until
            old = self._tracked.get(name)
            if (
                old is not None
                and old.schedule == record.schedule
                and old.active_since == record.active_since
            ):
                handled = max(handled, old.handled_until)
            tracked[name] = _Tracked(record.schedule, record.active_since, handled)
        self._tracked = tracked

    def _report_invalid(self, name: str, error: InvalidSchedule) -> None:
        if self._invalid.get(name) != error.message:  # once per name and problem
            self._invalid[name] = error.message
            log.error(
                "schedule %s cannot run: %s",
                name,
                error.message,
                extra={"action": "schedule.invalid", "schedule": name},
            )

    async def _fire_due(self, tracked: _Tracked) -> bool:
        """Skip and fire what is due of one schedule; True if more is due at once."""
        schedule = tracked.schedule
        plan = plan_slots(
            schedule,
            handled_until=tracked.handled_until,
            now=self.clock(),
            catch_up_seconds=self.options.catch_up_seconds,
            limit=self.options.batch,
        )
        if plan.skipped is not None:
            skipped = await skip_missed(self.pool, schedule, tracked.active_since, plan.cutoff)
            tracked.handled_until = max(tracked.handled_until, plan.cutoff)
            if skipped is not None:
                _log_skipped(schedule, skipped, plan.cutoff)
        for slot in plan.due:
            if self._stop.is_set():
                return False
            result = await fire_slot(self.pool, schedule.name, tracked.active_since, slot)
            if result.outcome is FireOutcome.STALE:
                self._reload_at = -math.inf
                return True
            tracked.handled_until = slot
            if result.outcome is FireOutcome.FIRED:
                _log_fired(schedule, slot, result)
        return len(plan.due) >= self.options.batch

    def _seconds_to_next(self) -> float:
        now = self.clock()
        floor = now - timedelta(seconds=max(self.options.catch_up_seconds, MIN_CATCH_UP_SECONDS))
        wait = max(0.0, self._reload_at - trio.current_time())
        for tracked in self._tracked.values():
            slot = tracked.schedule.next_slot(max(tracked.handled_until, floor))
            if slot is not None:
                # A millisecond late: waking a hair early would only loop once more.
                wait = min(wait, max(0.0, (slot - now).total_seconds() + 0.001))
        return min(wait, max(0.0, self._prune_at - trio.current_time()))


def _log_fired(schedule: Schedule, slot: datetime, result: FireResult) -> None:
    following = schedule.next_slot(slot)
    # Per-second schedules would flood INFO: fires more frequent than a minute go to DEBUG.
    level = logging.INFO if following is None or following - slot >= _INFO_PERIOD else logging.DEBUG
    log.log(
        level,
        "schedule %s fired for %s as job %s",
        schedule.name,
        slot.isoformat(),
        result.job_id,
        extra={
            "action": "schedule.fired",
            "schedule": schedule.name,
            "slot": slot.isoformat(),
            "job_id": result.job_id,
            "queue": result.queue,
        },
    )


def _log_skipped(schedule: Schedule, skipped: SlotRange, cutoff: datetime) -> None:
    count = f"{skipped.count}" if skipped.complete else f"more than {skipped.count}"
    log.warning(
        "schedule %s: skipped %s missed slot(s) from %s, older than the catch-up window",
        schedule.name,
        count,
        skipped.first.isoformat(),
        extra={
            "action": "schedule.skipped",
            "schedule": schedule.name,
            "count": skipped.count,
            "count_complete": skipped.complete,
            "first_slot": skipped.first.isoformat(),
            "last_slot": skipped.last.isoformat(),
            "cutoff": cutoff.isoformat(),
        },
    )
