"""``triaged schedules``: list cron and interval schedules with their last and next runs,
and define, enable, disable or delete them.

The list marks the built-in schedules (declared in code, synced at start: see
:mod:`daemon.queue.declared_schedules`) in a ``BUILT-IN`` column, shown when there is one:
``yes``, or ``retired`` for one no longer declared (disabled by the sync). An operator's
``set``, ``enable`` and ``disable`` on a built-in schedule survive restarts.

::

    triaged schedules [--json]
    triaged schedules set NAME (--cron EXPR | --every DURATION) --queue Q
                          [--timezone TZ] [--payload JSON] [--disabled]
    triaged schedules enable|disable|delete NAME

Input is validated while parsing: a bad expression, timezone, interval or payload exits
with status 2 and one ``error:`` line, before the database is touched. An unknown NAME
exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from daemon.queue import (
    InvalidSchedule,
    Schedule,
    ScheduleNotFound,
    ScheduleRecord,
    check_cron,
    check_name,
    check_payload,
    delete_schedule,
    list_schedules,
    parse_duration,
    parse_timezone,
    save_schedule,
    set_enabled,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.shared.db.pool import Pool

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``schedules`` and its actions ``set``, ``enable``, ``disable``, ``delete``."""
    schedules = commands.add_parser(
        "schedules",
        help="list, define, enable, disable or delete cron/interval schedules",
        description="Without an action: list the schedules with their last and next runs.",
    )
    schedules.add_argument("--json", action="store_true", help="print JSON, not a table")
    # The built-in schedules this version declares are synced first (see daemon.cli), so
    # a fresh database lists them and `set`/`enable`/`disable` find them.
    schedules.set_defaults(handler=_list, sync_schedules=True)
    actions = schedules.add_subparsers(dest="schedules_action", metavar="ACTION")

    define = actions.add_parser(
        "set",
        help="create or replace a schedule",
        description="Create a schedule, or replace its whole definition. Changing its "
        "timing (or enabling it) starts its slots afresh from now.",
    )
    define.add_argument(
        "name", metavar="NAME", type=_checked(lambda v: check_name("schedule name", v))
    )
    timing = define.add_mutually_exclusive_group(required=True)
    timing.add_argument(
        "--cron",
        metavar="EXPR",
        type=_checked(check_cron),
        help="5 fields (minute hour day month weekday) or 6 (second first)",
    )
    timing.add_argument(
        "--every",
        metavar="DURATION",
        type=_checked(parse_duration),
        help="an interval: seconds, or 90s, 15m, 2h, 1d (at least 1s); "
        "slots are multiples of it since 1970-01-01T00:00:00Z",
    )
    define.add_argument(
        "--queue",
        required=True,
        type=_checked(lambda v: check_name("queue name", v)),
        help="the queue the jobs go to",
    )
    define.add_argument(
        "--timezone",
        default="UTC",
        type=_checked(parse_timezone, keep=True),
        help="IANA timezone the cron expression is read in (default UTC)",
    )
    define.add_argument(
        "--payload",
        default={},
        type=_checked(_json_object),
        help="the jobs' payload, a JSON object (default {})",
    )
    define.add_argument("--disabled", action="store_true", help="define it disabled")
    define.set_defaults(handler=_set)

    for action, help_text in (
        ("enable", "enable a schedule (its slots start from now)"),
        ("disable", "disable a schedule"),
        ("delete", "delete a schedule and its fire records"),
    ):
        parser = actions.add_parser(action, help=help_text)
        parser.add_argument("name", metavar="NAME")
        parser.set_defaults(
            handler=_enable if action != "delete" else _delete, enabled=action == "enable"
        )


def _checked(check: Callable[[str], Any], *, keep: bool = False) -> Callable[[str], Any]:
    """An argparse ``type``: ``check``'s result (or the text itself when ``keep``, or
    when it returns None); its InvalidSchedule becomes argparse's exit-2 error line."""

    def convert(text: str) -> Any:
        try:
            value = check(text)
        except InvalidSchedule as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
        return text if keep or value is None else value

    return convert


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchedule(f"payload is not valid JSON: {exc}") from None
    check_payload(value)
    return dict(value)


async def _list(args: argparse.Namespace, pool: Pool) -> int:
    problems: list[str] = []
    async with pool.connection() as conn:
        records = await list_schedules(
            conn, on_invalid=lambda name, exc: problems.append(f"{name}: {exc.message}")
        )
    for problem in problems:
        print(f"triaged: schedule cannot run: {problem}", file=sys.stderr)
    now = datetime.now(UTC)
    if args.json:
        print(json.dumps([_as_json(r, now) for r in records], indent=2))
    elif not records:
        print("no schedules")
    else:
        print(_table(records, now))
    return EXIT_OK


async def _set(args: argparse.Namespace, pool: Pool) -> int:
    try:
        schedule = Schedule(
            name=args.name,
            queue=args.queue,
            cron=args.cron,
            interval=args.every,
            timezone=args.timezone,
            payload=args.payload,
            enabled=not args.disabled,
        )
    except InvalidSchedule as exc:  # each field was checked; kept for programmatic use
        print(f"triaged schedules set: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    async with pool.transaction() as conn:
        created = await save_schedule(conn, schedule)
    record = await _get(pool, schedule.name)
    print(
        f"schedule {schedule.name} {'created' if created else 'replaced'}: "
        f"{schedule.describe()} ({schedule.timezone}) -> queue {schedule.queue}; "
        f"next run {_when(record, record.next_run(datetime.now(UTC)))}"
    )
    return EXIT_OK


async def _enable(args: argparse.Namespace, pool: Pool) -> int:
    try:
        async with pool.transaction() as conn:
            await set_enabled(conn, args.name, args.enabled)
    except ScheduleNotFound as exc:
        print(f"triaged: {exc.message}", file=sys.stderr)
        return EXIT_NOT_FOUND
    record = await _get(pool, args.name)
    state = "enabled" if args.enabled else "disabled"
    print(
        f"schedule {args.name} {state}; next run "
        f"{_when(record, record.next_run(datetime.now(UTC)))}"
    )
    return EXIT_OK


async def _delete(args: argparse.Namespace, pool: Pool) -> int:
    try:
        async with pool.transaction() as conn:
            await delete_schedule(conn, args.name)
    except ScheduleNotFound as exc:
        print(f"triaged: {exc.message}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(f"schedule {args.name} deleted")
    return EXIT_OK


async def _get(pool: Pool, name: str) -> ScheduleRecord:
    async with pool.connection() as conn:
        records = await list_schedules(conn, on_invalid=lambda _name, _error: None)
    return next(r for r in records if r.schedule.name == name)


_COLUMNS = ("NAME", "SCHEDULE", "TIMEZONE", "QUEUE", "ENABLED", "LAST RUN", "NEXT RUN")
_BUILT_IN = "BUILT-IN"  # a column only when some schedule is declared in code


def _table(records: list[ScheduleRecord], now: datetime) -> str:
    built_in = any(r.declared for r in records)
    rows: list[tuple[str, ...]] = [(*_COLUMNS, _BUILT_IN) if built_in else _COLUMNS]
    for record in records:
        schedule = record.schedule
        last = "-" if record.last_slot is None else _when(record, record.last_slot)
        if record.last_job_id is not None:
            last += f" (job {record.last_job_id})"
        row: tuple[str, ...] = (
            schedule.name,
            schedule.describe(),
            schedule.timezone,
            schedule.queue,
            "yes" if schedule.enabled else "no",
            last,
            _when(record, record.next_run(now)),
        )
        if built_in:
            row = (*row, _origin(record))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _origin(record: ScheduleRecord) -> str:
    if not record.declared:
        return "no"
    return "yes" if record.retired_at is None else "retired"


def _when(record: ScheduleRecord, moment: datetime | None) -> str:
    """A time in the schedule's timezone, with its abbreviation (CET, CEST, UTC)."""
    if moment is None:
        return "-"
    return moment.astimezone(record.schedule.zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _as_json(record: ScheduleRecord, now: datetime) -> dict[str, Any]:
    schedule = record.schedule

    def iso(moment: datetime | None) -> str | None:
        return None if moment is None else moment.astimezone(schedule.zone).isoformat()

    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "interval_seconds": schedule.interval,
        "timezone": schedule.timezone,
        "queue": schedule.queue,
        "payload": dict(schedule.payload),
        "enabled": schedule.enabled,
        "last_slot": iso(record.last_slot),
        "last_fired_at": iso(record.last_fired_at),
        "last_job_id": record.last_job_id,
        "next_run": iso(record.next_run(now)),
        "built_in": record.declared,
        "retired_at": iso(record.retired_at),
    }
