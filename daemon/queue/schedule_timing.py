"""Cron and interval schedules: definitions and their slots (pure, no I/O).

A schedule (a row of ``schedules``) names a timing, a cron expression or an interval,
and the job it enqueues (queue and payload). Its *slots* are the instants the timing
yields; they are a pure function of the definition (:meth:`Schedule.next_slots`), so
every process computes the same ones.

The firing itself (one transaction per slot, once across processes) is in
:mod:`daemon.queue.scheduler`, the statements in
:mod:`daemon.queue.schedule_store`.

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
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import attrs
from cronsim import CronSim, CronSimError

from daemon.queue.jobs import JsonObject, QueueError

if TYPE_CHECKING:
    from daemon.queue.jobs import Job

MIN_INTERVAL_SECONDS = 1.0
MIN_CATCH_UP_SECONDS = 10.0
SKIP_COUNT_LIMIT = 10_000  # missed cron slots counted for the skip log, at most
SLOT_KEY = "_schedule"  # payload key of a scheduled job: {"name": ..., "slot": iso}

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


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
        default=None, converter=lambda v: None if v is None else " ".join(str(v).split())
    )
    interval: float | None = None  # seconds
    timezone: str = "UTC"
    payload: JsonObject = attrs.field(factory=dict)
    enabled: bool = True
    zone: ZoneInfo = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        check_name("schedule name", self.name)
        check_name("queue name", self.queue)
        if (self.cron is None) == (self.interval is None):
            raise InvalidSchedule(
                "give either a cron expression or an interval"
                + (", not both" if self.cron is not None else "")
            )
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

    def slot_range(
        self, after: datetime, until: datetime, limit: int = SKIP_COUNT_LIMIT
    ) -> SlotRange | None:
        """Count the slots in ``(after, until]``: None when there are none. Interval
        slots are counted exactly; cron slots one by one, up to ``limit``."""
        if self.interval is not None:
            step = _interval_micros(self.interval)
            first = _micros(after) // step + 1
            last = _micros(until) // step
            if last < first:
                return None
            return SlotRange(
                first=_from_micros(first * step),
                last=_from_micros(last * step),
                count=last - first + 1,
                complete=True,
            )
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


def plan_slots(
    schedule: Schedule,
    *,
    handled_until: datetime,
    now: datetime,
    catch_up_seconds: float,
    limit: int,
) -> Plan:
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
    declared: bool = False  # built in: declared in code, synced at start
    retired_at: datetime | None = None  # declared once, no longer: disabled then

    @property
    def handled_until(self) -> datetime:
        """Slots up to this instant were fired, skipped, or predate the definition."""
        return max(
            t for t in (self.active_since, self.last_slot, self.skipped_through) if t is not None
        )

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
        raise InvalidSchedule(f"{what} must be 1 to 100 letters, digits or _ . : - (got {value!r})")


def check_cron(expr: str) -> None:
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise InvalidSchedule(
            f"cron expression {expr!r} has {len(fields)} field(s): give 5 (minute hour "
            "day month weekday) or 6 (second minute hour day month weekday)"
        )
    try:
        CronSim(expr, _EPOCH)
    except CronSimError as exc:
        raise InvalidSchedule(f"invalid cron expression {expr!r}: {exc}") from None


def check_interval(seconds: float | None) -> None:
    if seconds is None or not math.isfinite(seconds) or seconds < MIN_INTERVAL_SECONDS:
        raise InvalidSchedule(
            f"interval must be at least {MIN_INTERVAL_SECONDS:g} second (got {seconds!r})"
        )


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, TypeError):  # ZoneInfoNotFoundError is a KeyError
        raise InvalidSchedule(
            f"unknown timezone {name!r} (want an IANA name such as 'Europe/Berlin' or 'UTC')"
        ) from None


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
        raise InvalidSchedule(
            f"invalid interval {text!r}: give seconds, or a number with s, m, h or d"
        )
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
