"""Declared schedules: periodic work a module declares in code, synced at start.

Periodic application work is a schedule plus a job handler. A module declares its
schedules as :class:`~daemon.queue.schedule_timing.Schedule` values (name, cron or
interval, IANA timezone, queue, payload; ``enabled`` is the flag a *new* schedule gets)
and registers a handler for the queue. At start the process calls
:func:`sync_declared_schedules` with every declaration; the cron scheduler then fires each
slot once however many processes run, and the handler runs as an ordinary job.

Sync rules (one transaction, under one advisory lock, so processes starting together
serialize and each later one finds the work done):

* a declaration with no row of its name is **inserted**, marked declared, its timing
  recorded as the last declared timing;
* for a row declared before, the code's **queue and payload** are applied. Its **timing**
  (cron, interval, timezone) follows the code only while it still equals the timing
  declared last: a different stored timing was set by an operator
  (``triaged schedules set``) and is kept, whatever the code declares now. The code's
  timing is recorded as the last declared either way. ``enabled`` is never changed for a
  declared schedule: an operator's ``triaged schedules disable`` survives restarts;
* a row declared before but no longer declared is **disabled** (not deleted: its history
  and the operator's view stay) and logged once (``action="schedule.retired"``). Declared
  again later, it gets back the ``enabled`` flag it had when retired;
* a row an operator created by hand (never declared) is **never touched**, even if a
  declaration has its name: that is logged (``action="schedule.declaration_conflict"``)
  and the declaration is skipped.

An operator who deletes a declared schedule sees it re-inserted at the next start; to
stop a built-in schedule, disable it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs

from daemon.queue import schedule_store
from daemon.queue.schedule_timing import InvalidSchedule, Schedule

if TYPE_CHECKING:
    from collections.abc import Iterable

    from daemon.shared.db.pool import Pool

log = logging.getLogger("triaged.queue.schedules")


@attrs.frozen(kw_only=True)
class SyncReport:
    """What one sync did, by schedule name (each tuple sorted)."""

    inserted: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()  # queue, payload, timing or un-retired: a row changed
    operator_timing_kept: tuple[str, ...] = ()  # the code's timing differs; operator's kept
    retired: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()  # an operator's schedule holds the declared name


async def sync_declared_schedules(pool: Pool, declarations: Iterable[Schedule]) -> SyncReport:
    """Upsert the declared schedules (see the module docstring for the rules).

    Owns its transaction; idempotent (a second call with the same declarations changes
    nothing). Safe to call from many processes at once: a transaction-level advisory lock
    serializes the calls. Cancelled, it rolls back and nothing changed.

    Raises:
        InvalidSchedule: two declarations share a name.
    """
    declared: dict[str, Schedule] = {}
    for schedule in declarations:
        if schedule.name in declared:
            raise InvalidSchedule(f"schedule {schedule.name!r} is declared twice")
        declared[schedule.name] = schedule
    inserted: list[str] = []
    updated: list[str] = []
    kept: list[str] = []
    conflicts: list[str] = []
    async with pool.transaction() as conn:
        await schedule_store.lock_declared_sync(conn)
        rows = await schedule_store.declared_rows(conn, sorted(declared))
        for name, schedule in sorted(declared.items()):
            row = rows.get(name)
            if row is None:
                await schedule_store.insert_declared(conn, schedule)
                inserted.append(name)
            elif not row.declared:
                conflicts.append(name)
            else:
                code_timing = schedule_store.timing_of(schedule)
                operator_changed = row.timing != row.declared_timing
                timing = row.timing if operator_changed else code_timing
                if operator_changed and code_timing != row.declared_timing:
                    kept.append(name)
                if (
                    timing != row.timing
                    or code_timing != row.declared_timing
                    or schedule.queue != row.queue
                    or dict(schedule.payload) != row.payload
                    or row.retired_at is not None
                ):
                    await schedule_store.update_declared(conn, schedule, timing)
                    updated.append(name)
        gone = [name for name, row in rows.items() if row.declared and name not in declared]
        retired = await schedule_store.retire_declared(conn, sorted(gone))
    report = SyncReport(
        inserted=tuple(inserted),
        updated=tuple(updated),
        operator_timing_kept=tuple(kept),
        retired=tuple(sorted(retired)),
        conflicts=tuple(conflicts),
    )
    _log(report, declared)
    return report


def _log(report: SyncReport, declared: dict[str, Schedule]) -> None:
    for name in report.inserted:
        log.info(
            "declared schedule %s added (%s)",
            name,
            declared[name].describe(),
            extra={"action": "schedule.declared", "schedule": name},
        )
    for name in report.updated:
        log.info(
            "declared schedule %s updated from its declaration",
            name,
            extra={"action": "schedule.redeclared", "schedule": name},
        )
    for name in report.operator_timing_kept:
        log.info(
            "declared schedule %s: the timing an operator set is kept over the declared %s",
            name,
            declared[name].describe(),
            extra={"action": "schedule.operator_timing_kept", "schedule": name},
        )
    for name in report.retired:
        log.warning(
            "schedule %s is no longer declared: disabled",
            name,
            extra={"action": "schedule.retired", "schedule": name},
        )
    for name in report.conflicts:
        log.warning(
            "schedule %s is declared in code but an operator created a schedule of that "
            "name: left as it is, the declaration is ignored",
            name,
            extra={"action": "schedule.declaration_conflict", "schedule": name},
        )
