"""Cron and interval schedules: durable, leaderless, each slot fired once.

Design note
-----------
A schedule (a row of ``schedules``) names a timing, a cron expression or an interval,
and the job it enqueues (queue and payload). Its *slots* are the instants the timing
yields; they are a pure function of the definition (:meth:`Schedule.next_slots`), so
every process computes the same ones.

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

Timing
  * Cron: 5 fields (minute hour day month weekday) or 6 (second first), read by cronsim,
    evaluated in the schedule's IANA timezone. An expression whose minute and hour are
    both fixed (``30 2 * * *``, ``0 30 2 * * *``) is a *wall-clock* job, as in Debian
    cron: on a spring-forward day a time inside the gap fires once when the gap ends
    (02:30 in Europe/Berlin fires at 03:00 CEST), on a fall-back day a repeated time
    fires once, at its first occurrence (02:30 CEST, not again at 02:30 CET). Any other
    expression (``*/15 * * * *``, ``0 * * * *``, ``* * * * * *``) follows elapsed time:
    it fires at every matching instant that exists, so an hourly job fires 23 times on
    a spring-forward day and 25 times on a fall-back day. This holds for 5 and 6 fields
    alike (cronsim applies it to 5 fields only; we apply it ourselves, to both).
  * Interval: every ``interval`` seconds (at least 1), anchored at the Unix epoch:
    slots are the multiples of the interval since 1970-01-01T00:00:00Z, so every 3600 s
    fires on the hour UTC whatever the timezone, in every process, whenever it started.
    The timezone of an interval schedule only affects how its times are shown.

Catch-up
  Slots fire while they are at most ``catch_up_seconds`` late (never less than
  :data:`MIN_CATCH_UP_SECONDS`, so a slot reached late by a busy process still fires).
  After downtime, the missed slots inside that window fire once each, oldest first; the
  older ones are skipped: ``skipped_through`` records it and one process logs it once
  (``action="schedule.skipped"``). Slots before ``active_since`` (the schedule's
  creation, its last change of timing, or its last enabling) never fire.

Failures
  A database error aborts the pass: it is logged, the scheduler backs off (0.5 s
  doubling to 10 s), re-reads the schedules and goes on. Nothing is lost: a slot not
  fired stays open while it is inside the catch-up window.

``schedule_fires`` rows older than a day are pruned (one process at a time, in
batches). The clock is the process's own; hosts must keep time (NTP).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import attrs
import psycopg
import trio
import trio.lowlevel
from cronsim import CronSim, CronSimError
from psycopg.types.json import Jsonb

from daemon.queue.enqueue import enqueue
from daemon.queue.jobs import JsonObject, QueueError
from daemon.shared.db.queries import load_queries
from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    from daemon.queue.jobs import Job
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

SQL = load_queries("daemon.queue", "schedules.sql")
log = logging.getLogger("triaged.queue.schedules")

MIN_INTERVAL_SECONDS = 1.0
MIN_CATCH_UP_SECONDS = 10.0
SKIP_COUNT_LIMIT = 10_000  # missed cron slots counted for the skip log, at most
SLOT_KEY = "_schedule"  # payload key of a scheduled job: {"name": ..., "slot": iso}

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INFO_PERIOD = timedelta(minutes=1)  # fires at most this often are logged at INFO


class InvalidSchedule(QueueError, ValueError):
    """The schedule definition is invalid."""


class ScheduleNotFound(QueueError):
    """No such schedule."""


# -- the pure part -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Schedule:
    """A schedule's definition. Pure: no I/O.

    Raises:
        InvalidSchedule: on construction, with one message naming the problem.
    """

    name: str
    queue: str
    cron: str | None = attrs.field(
        default=None, converter=lambda v: None if v is None else " ".join(str(v).split()))
    interval: float | None = None  # seconds
    timezone: str = "UTC"
    payload: JsonObject = attrs.field(factory=dict)
    enabled: bool = True
    zone: ZoneInfo = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        check_name("schedule name", self.name)
        check_name("queue name", self.queue)
        if (self.cron is None) == (self.interval is None):
            raise InvalidSchedule("give either a cron expression or an interval"
                                  + (", not both" if self.cron is not None else ""))
        if self.cron is not None:
            check_cron(self.cron)
        else:
            check_interval(self.interval)
        object.__setattr__(self, "zone", parse_timezone(self.timezone))
        check_payload(self.payload)

    def describe(self) -> str:
        """``cron 30 2 * * *`` or ``every 90s``."""
        if self.cron is not None:
            return f"cron {self.cron}"
        assert self.interval is not None
        return f"every {format_duration(self.interval)}"

    def next_slot(self, after: datetime) -> datetime | None:
        """The first slot strictly after ``after`` (UTC); None when a cron expression
        has no match within 50 years (where cronsim stops looking)."""
        return next(self._slots_after(after), None)

    def next_slots(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """The slots ``s`` with ``after < s <= until``, in increasing order, in UTC."""
        for slot in self._slots_after(after):
            if slot > until:
                return
            yield slot

    def slot_range(self, after: datetime, until: datetime,
                   limit: int = SKIP_COUNT_LIMIT) -> SlotRange | None:
        """Count the slots in ``(after, until]``: None when there are none. Interval
        slots are counted exactly; cron slots one by one, up to ``limit``."""
        if self.interval is not None:
            step = _interval_micros(self.interval)
            first = _micros(after) // step + 1
            last = _micros(until) // step
            if last < first:
                return None
            return SlotRange(first=_from_micros(first * step), last=_from_micros(last * step),
                             count=last - first + 1, complete=True)
        slots = list(itertools.islice(self.next_slots(after, until), limit + 1))
        if not slots:
            return None
        complete = len(slots) <= limit
        slots = slots[:limit]
        return SlotRange(first=slots[0], last=slots[-1], count=len(slots), complete=complete)

    def _slots_after(self, after: datetime) -> Iterator[datetime]:
        if after.tzinfo is None:
            raise ValueError("slot times are timezone-aware")
        if self.interval is not None:
            return _interval_slots(_interval_micros(self.interval), after)
        assert self.cron is not None
        return _cron_slots(self.cron, self.zone, after)


@attrs.frozen(kw_only=True)
class SlotRange:
    """Slots counted between two instants. ``complete`` False: counting stopped at the
    limit; ``count`` is then a lower bound and ``last`` the last one counted."""

    first: datetime
    last: datetime
    count: int
    complete: bool


@attrs.frozen(kw_only=True)
class Plan:
    """What is due for one schedule at ``now``: see :func:`plan_slots`."""

    cutoff: datetime  # slots at or before this are too late to fire
    skipped: SlotRange | None  # missed slots older than the window
    due: tuple[datetime, ...]  # slots to fire now, oldest first


def plan_slots(schedule: Schedule, *, handled_until: datetime, now: datetime,
               catch_up_seconds: float, limit: int) -> Plan:
    """The catch-up arithmetic. Slots after ``handled_until`` (the last slot fired or
    skipped, or when the definition became active) and up to ``now`` are missed or due:
    those in the window ``(now - catch_up, now]`` are due (the oldest ``limit`` of them),
    the older ones are skipped. The window is at least :data:`MIN_CATCH_UP_SECONDS`."""
    window = timedelta(seconds=max(catch_up_seconds, MIN_CATCH_UP_SECONDS))
    cutoff = now - window
    skipped = None
    if handled_until < cutoff:
        skipped = schedule.slot_range(handled_until, cutoff)
    start = max(handled_until, cutoff)
    due = tuple(itertools.islice(schedule.next_slots(start, now), limit))
    return Plan(cutoff=cutoff, skipped=skipped, due=due)


@attrs.frozen(kw_only=True)
class ScheduleRecord:
    """A stored schedule: its definition and what it has done."""

    schedule: Schedule
    active_since: datetime  # slots at or before this never fire
    last_slot: datetime | None = None  # the latest slot fired
    last_fired_at: datetime | None = None
    last_job_id: int | None = None
    skipped_through: datetime | None = None

    @property
    def handled_until(self) -> datetime:
        """Slots up to this instant were fired, skipped, or predate the definition."""
        return max(t for t in (self.active_since, self.last_slot, self.skipped_through)
                   if t is not None)

    def next_run(self, now: datetime) -> datetime | None:
        """The next slot after ``now``; None when disabled or when there is none."""
        if not self.schedule.enabled:
            return None
        return self.schedule.next_slot(max(now, self.handled_until))


@attrs.frozen(kw_only=True)
class ScheduledRun:
    """Which schedule and slot a job was enqueued for (from its payload)."""

    name: str
    slot: datetime


def scheduled_run(job: Job) -> ScheduledRun | None:
    """The schedule slot ``job`` serves; None for a job no schedule enqueued."""
    marker = job.payload.get(SLOT_KEY)
    if not isinstance(marker, dict):
        return None
    return ScheduledRun(name=marker["name"], slot=datetime.fromisoformat(marker["slot"]))


# -- validation --------------------------------------------------------------------------


def check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidSchedule(f"{what} must be 1 to 100 letters, digits or _ . : - "
                              f"(got {value!r})")


def check_cron(expr: str) -> None:
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise InvalidSchedule(
            f"cron expression {expr!r} has {len(fields)} field(s): give 5 (minute hour "
            "day month weekday) or 6 (second minute hour day month weekday)")
    try:
        CronSim(expr, _EPOCH)
    except CronSimError as exc:
        raise InvalidSchedule(f"invalid cron expression {expr!r}: {exc}") from None


def check_interval(seconds: float | None) -> None:
    if seconds is None or not math.isfinite(seconds) or seconds < MIN_INTERVAL_SECONDS:
        raise InvalidSchedule(f"interval must be at least {MIN_INTERVAL_SECONDS:g} second "
                              f"(got {seconds!r})")


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, TypeError):  # ZoneInfoNotFoundError is a KeyError
        raise InvalidSchedule(f"unknown timezone {name!r} (want an IANA name such as "
                              "'Europe/Berlin' or 'UTC')") from None


def check_payload(payload: object) -> None:
    if not isinstance(payload, Mapping):
        raise InvalidSchedule("payload must be a JSON object")
    if SLOT_KEY in payload:
        raise InvalidSchedule(f"payload key {SLOT_KEY!r} is reserved for the slot")
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidSchedule(f"payload is not JSON: {exc}") from None


_UNITS = {"d": 86_400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d`` -> seconds.

    Raises:
        InvalidSchedule: not a duration of at least one second.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise InvalidSchedule(f"invalid interval {text!r}: give seconds, or a number "
                              "with s, m, h or d")
    seconds = float(match[1]) * _UNITS[match[2] or "s"]
    check_interval(seconds)
    return seconds


def format_duration(seconds: float) -> str:
    for unit, size in _UNITS.items():
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# -- slot arithmetic ---------------------------------------------------------------------


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _interval_micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _interval_slots(step: int, after: datetime) -> Iterator[datetime]:
    k = _micros(after) // step + 1
    while True:
        yield _from_micros(k * step)
        k += 1


def _follows_wall_clock(expr: str) -> bool:
    """Debian cron's rule: a job whose minute and hour are both fixed is a wall-clock job."""
    fields = expr.split()
    minute, hour = fields[-5], fields[-4]
    return not minute.startswith("*") and not hour.startswith("*")


def _cron_slots(expr: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Slots of a cron expression after ``after``, in UTC, strictly increasing.

    Wall-clock jobs iterate over local wall times (no zone: each wall time once) and map
    each to an instant; the others iterate over real instants in the zone.
    """
    local = after.astimezone(zone)
    candidates: Iterator[datetime]
    if _follows_wall_clock(expr):
        naive = CronSim(expr, local.replace(tzinfo=None))
        candidates = (_wall_time_instant(wall, zone) for wall in naive)
    else:
        candidates = (moment.astimezone(UTC) for moment in CronSim(expr, local))
    previous = after
    for slot in candidates:
        # Around a transition two wall times can map to one instant (both in the gap),
        # or a first occurrence can lie before ``after`` (which was in the repeated hour).
        if slot > previous:
            previous = slot
            yield slot


def _wall_time_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant of a local wall time: its first occurrence when repeated (fold=0);
    when skipped by a spring-forward, the end of the gap (the first real minute)."""
    local = wall.replace(tzinfo=zone)
    minute = wall.replace(second=0)
    while not _exists(local):
        minute += timedelta(minutes=1)
        local = minute.replace(tzinfo=zone)
    return local.astimezone(UTC)


def _exists(local: datetime) -> bool:
    # Same tzinfo on both sides: compares wall times.
    return local.astimezone(UTC).astimezone(local.tzinfo) == local


# -- the database ------------------------------------------------------------------------


async def save_schedule(conn: TrioConnection, schedule: Schedule) -> bool:
    """Create or replace the schedule named ``schedule.name``; True when created.

    Declarative: the stored definition becomes exactly ``schedule``. Its slots restart
    from now (``active_since``) only when the timing changed or it was enabled again.
    Runs in the caller's transaction.
    """
    row = await (await conn.execute(SQL["upsert_schedule"], {
        "name": schedule.name, "cron": schedule.cron, "interval": schedule.interval,
        "timezone": schedule.timezone, "queue": schedule.queue,
        "payload": Jsonb(dict(schedule.payload)), "enabled": schedule.enabled,
    })).fetchone()
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
    conn: TrioConnection, *, enabled_only: bool = False,
    on_invalid: Callable[[str, InvalidSchedule], None] | None = None,
) -> list[ScheduleRecord]:
    """Every schedule (or the enabled ones), by name.

    A stored row that is not a valid definition (written by hand, or a timezone this
    host does not know) is passed to ``on_invalid`` and left out; without it, raised.
    """
    rows = await (await conn.execute(SQL["list_schedules"],
                                     {"enabled_only": enabled_only})).fetchall()
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
    (name, cron, interval, timezone, queue, payload, enabled, active_since, last_slot,
     last_fired_at, last_job_id, skipped_through) = row
    schedule = Schedule(name=name, cron=cron, interval=interval, timezone=timezone,
                        queue=queue, payload=payload, enabled=enabled)
    return ScheduleRecord(schedule=schedule, active_since=active_since, last_slot=last_slot,
                          last_fired_at=last_fired_at, last_job_id=last_job_id,
                          skipped_through=skipped_through)


class FireOutcome(StrEnum):
    FIRED = "fired"  # this call enqueued the slot's job
    HANDLED = "handled"  # the slot (or a later one) was already fired or skipped
    STALE = "stale"  # deleted, disabled or redefined since the caller read it


@attrs.frozen
class FireResult:
    outcome: FireOutcome
    job_id: int | None = None  # FIRED: the job enqueued, and its queue
    queue: str | None = None


async def fire_slot(pool: Pool, name: str, active_since: datetime,
                    slot: datetime) -> FireResult:
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


async def skip_missed(pool: Pool, schedule: Schedule, active_since: datetime,
                      cutoff: datetime) -> SlotRange | None:
    """Mark the unfired slots up to ``cutoff`` skipped; the slots this call skipped.

    Owns its transaction, under the schedule's row lock: of several processes, the first
    skips the range and gets it, the others get None. None too when the schedule was
    deleted, disabled or redefined since ``active_since``.
    """
    async with pool.transaction() as conn:
        row = await (await conn.execute(SQL["lock_schedule"],
                                        {"name": schedule.name})).fetchone()
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
            cursor = await conn.execute(SQL["prune_fires"],
                                        {"keep_seconds": keep_seconds, "limit": batch})
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

    def __init__(self, pool: Pool, options: SchedulerOptions | None = None, *,
                 clock: Callable[[], datetime] = _utc_now) -> None:
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
                log.warning("schedule pass failed, retrying in %.1fs: %s", wait, exc,
                            extra={"action": "schedule.pass_failed"})
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
                log.debug("pruned %d schedule fire record(s)", pruned,
                          extra={"action": "schedule.pruned", "count": pruned})
        return 0.0 if more else self._seconds_to_next()

    async def _reload(self) -> None:
        async with self.pool.connection() as conn:
            records = await list_schedules(conn, enabled_only=True,
                                           on_invalid=self._report_invalid)
        tracked = {}
        for record in records:
            name = record.schedule.name
            handled = record.handled_until
            old = self._tracked.get(name)
            if old is not None and old.schedule == record.schedule \
                    and old.active_since == record.active_since:
                handled = max(handled, old.handled_until)
            tracked[name] = _Tracked(record.schedule, record.active_since, handled)
        self._tracked = tracked

    def _report_invalid(self, name: str, error: InvalidSchedule) -> None:
        if self._invalid.get(name) != error.message:  # once per name and problem
            self._invalid[name] = error.message
            log.error("schedule %s cannot run: %s", name, error.message,
                      extra={"action": "schedule.invalid", "schedule": name})

    async def _fire_due(self, tracked: _Tracked) -> bool:
        """Skip and fire what is due of one schedule; True if more is due at once."""
        schedule = tracked.schedule
        plan = plan_slots(schedule, handled_until=tracked.handled_until, now=self.clock(),
                          catch_up_seconds=self.options.catch_up_seconds,
                          limit=self.options.batch)
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
        floor = now - timedelta(seconds=max(self.options.catch_up_seconds,
                                            MIN_CATCH_UP_SECONDS))
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
    level = logging.INFO if following is None or following - slot >= _INFO_PERIOD \
        else logging.DEBUG
    log.log(level, "schedule %s fired for %s as job %s", schedule.name, slot.isoformat(),
            result.job_id, extra={"action": "schedule.fired", "schedule": schedule.name,
                                  "slot": slot.isoformat(), "job_id": result.job_id,
                                  "queue": result.queue})


def _log_skipped(schedule: Schedule, skipped: SlotRange, cutoff: datetime) -> None:
    count = f"{skipped.count}" if skipped.complete else f"more than {skipped.count}"
    log.warning("schedule %s: skipped %s missed slot(s) from %s, older than the catch-up "
                "window", schedule.name, count, skipped.first.isoformat(),
                extra={"action": "schedule.skipped", "schedule": schedule.name,
                       "count": skipped.count, "count_complete": skipped.complete,
                       "first_slot": skipped.first.isoformat(),
                       "last_slot": skipped.last.isoformat(),
                       "cutoff": cutoff.isoformat()})
