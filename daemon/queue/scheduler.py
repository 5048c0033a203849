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

Slot timing and catch-up rules are in :mod:`daemon.queue.schedule_timing`; the
statements in :mod:`daemon.queue.schedule_store`.

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
from typing import TYPE_CHECKING

import attrs
import psycopg
import trio

from daemon.queue.schedule_store import (
    FireOutcome,
    FireResult,
    fire_slot,
    list_schedules,
    prune_fires,
    skip_missed,
)
from daemon.queue.schedule_timing import MIN_CATCH_UP_SECONDS, plan_slots
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.queue.schedule_timing import InvalidSchedule, Schedule, SlotRange
    from daemon.shared.db.pool import Pool

log = logging.getLogger("triaged.queue.schedules")
_INFO_PERIOD = timedelta(minutes=1)  # fires at most this often are logged at INFO


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
