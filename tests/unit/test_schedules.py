"""Schedules without a database: slots, timezones and DST, catch-up arithmetic, validation,
and the command line's refusal of bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import attrs
import pytest

from daemon.cli import build_parser
from daemon.queue import Backoff, Job
from daemon.queue.schedule_timing import (
    MIN_CATCH_UP_SECONDS,
    InvalidSchedule,
    Schedule,
    ScheduleRecord,
    SlotRange,
    format_duration,
    parse_duration,
    plan_slots,
    scheduled_run,
)
from daemon.shared.errors import DaemonError

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def cron(expr: str, timezone: str = "UTC") -> Schedule:
    return Schedule(name="s", queue="q", cron=expr, timezone=timezone)


def every(seconds: float) -> Schedule:
    return Schedule(name="s", queue="q", interval=seconds)


def local_times(schedule: Schedule, after: datetime, until: datetime) -> list[str]:
    return [
        slot.astimezone(schedule.zone).strftime("%m-%d %H:%M:%S %Z")
        for slot in schedule.next_slots(after, until)
    ]


def day_in(zone: ZoneInfo, year: int, month: int, day: int) -> tuple[datetime, datetime]:
    """(just before local midnight, just before the next local midnight) of that day."""
    start = datetime(year, month, day, tzinfo=zone)
    end = start + timedelta(days=1)
    end = datetime(end.year, end.month, end.day, tzinfo=zone)
    tick = timedelta(microseconds=1)
    return (start - tick).astimezone(UTC), (end - tick).astimezone(UTC)


# -- cron --------------------------------------------------------------------------------


def test_five_field_cron_in_utc():
    schedule = cron("*/15 9 * * MON-FRI")
    slots = list(schedule.next_slots(utc(2025, 1, 3, 9, 20), utc(2025, 1, 6, 9, 30)))
    # Friday 09:30, 09:45, then the weekend is skipped: Monday 09:00 .. 09:30.
    assert slots == [
        utc(2025, 1, 3, 9, 30),
        utc(2025, 1, 3, 9, 45),
        utc(2025, 1, 6, 9, 0),
        utc(2025, 1, 6, 9, 15),
        utc(2025, 1, 6, 9, 30),
    ]


def test_six_field_cron_has_seconds_first():
    schedule = cron("*/20 * * * * *")
    assert list(schedule.next_slots(utc(2025, 1, 1, 0, 0, 0), utc(2025, 1, 1, 0, 1, 0))) == [
        utc(2025, 1, 1, 0, 0, 20),
        utc(2025, 1, 1, 0, 0, 40),
        utc(2025, 1, 1, 0, 1, 0),
    ]
    per_second = cron("* * * * * *")
    after = datetime(2025, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)
    assert per_second.next_slot(after) == utc(2025, 1, 1, 0, 0, 1)
    assert len(list(per_second.next_slots(after, after + timedelta(seconds=10)))) == 10


def test_slots_are_strictly_after_the_start_and_up_to_the_end_inclusive():
    schedule = cron("0 * * * *")
    assert list(schedule.next_slots(utc(2025, 1, 1, 10), utc(2025, 1, 1, 12))) == [
        utc(2025, 1, 1, 11),
        utc(2025, 1, 1, 12),
    ]


def test_cron_is_read_in_the_schedules_timezone():
    schedule = cron("0 9 * * *", "America/New_York")
    assert schedule.next_slot(utc(2025, 1, 15)) == utc(2025, 1, 15, 14)  # EST, UTC-5
    assert schedule.next_slot(utc(2025, 7, 15)) == utc(2025, 7, 15, 13)  # EDT, UTC-4


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 30 2 * * *"])
def test_spring_forward_a_daily_job_in_the_gap_fires_once_when_the_gap_ends(expr):
    schedule = cron(expr, "Europe/Berlin")
    # 2025-03-30: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    assert local_times(schedule, utc(2025, 3, 28, 12), utc(2025, 4, 1)) == [
        "03-29 02:30:00 CET",
        "03-30 03:00:00 CEST",
        "03-31 02:30:00 CEST",
    ]


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 30 2 * * *"])
def test_fall_back_a_daily_job_in_the_repeated_hour_fires_once_at_its_first_occurrence(expr):
    schedule = cron(expr, "Europe/Berlin")
    # 2025-10-26: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    assert local_times(schedule, utc(2025, 10, 24, 12), utc(2025, 10, 28)) == [
        "10-25 02:30:00 CEST",
        "10-26 02:30:00 CEST",
        "10-27 02:30:00 CET",
    ]


def test_a_start_inside_the_repeated_hour_does_not_fire_its_first_occurrence_again():
    schedule = cron("30 2 * * *", "Europe/Berlin")
    # 01:10 UTC is 02:10 CET, the second pass through 02:xx: 02:30 CEST (00:30 UTC) is past.
    assert schedule.next_slot(utc(2025, 10, 26, 1, 10)) == utc(2025, 10, 27, 1, 30)


def test_elapsed_time_jobs_fire_at_every_real_instant_across_transitions():
    hourly = cron("0 * * * *", "Europe/Berlin")
    assert len(list(hourly.next_slots(*day_in(BERLIN, 2025, 3, 30)))) == 23
    assert len(list(hourly.next_slots(*day_in(BERLIN, 2025, 10, 26)))) == 25
    assert len(list(hourly.next_slots(*day_in(BERLIN, 2025, 10, 27)))) == 24


@pytest.mark.parametrize("expr", ["30 2 * * *", "*/20 1-3 * * *", "0 * * * *", "15 */7 * * * *"])
def test_slots_do_not_depend_on_where_the_iteration_starts(expr):
    # Every process must compute the same slots, whenever it last looked.
    schedule = cron(expr, "Europe/Berlin")
    start, end = utc(2025, 10, 25, 22), utc(2025, 10, 26, 4)
    full = list(schedule.next_slots(start, end))
    assert full
    for after in [start + timedelta(minutes=7 * k) for k in range(52)]:
        assert list(schedule.next_slots(after, end)) == [s for s in full if s > after]


def test_rare_expressions_find_their_next_slot():
    assert cron("0 0 29 2 *").next_slot(utc(2025, 1, 1)) == utc(2028, 2, 29)
    assert cron("0 0 * 2 MON#5").next_slot(utc(2025, 1, 1)) == utc(2044, 2, 29)


# -- intervals ---------------------------------------------------------------------------


def test_interval_slots_are_multiples_of_the_interval_since_the_epoch():
    schedule = every(3600)
    assert schedule.next_slot(utc(2025, 6, 1, 10, 17, 3)) == utc(2025, 6, 1, 11)
    assert every(7).next_slot(utc(1970, 1, 1, 0, 0, 13)) == utc(1970, 1, 1, 0, 0, 14)
    # Whatever the timezone: an interval is elapsed time.
    india = Schedule(name="s", queue="q", interval=3600, timezone="Asia/Kolkata")
    assert india.next_slot(utc(2025, 6, 1, 10, 17)) == utc(2025, 6, 1, 11)


def test_fractional_intervals_are_exact_to_the_microsecond():
    schedule = every(1.5)
    slots = list(schedule.next_slots(utc(2025, 1, 1), utc(2025, 1, 1, 0, 0, 6)))
    assert [s.strftime("%S.%f") for s in slots] == [
        "01.500000",
        "03.000000",
        "04.500000",
        "06.000000",
    ]


def test_interval_slot_range_is_counted_exactly_without_iterating():
    day = every(1).slot_range(utc(2025, 1, 1), utc(2025, 2, 1))
    assert day == SlotRange(
        first=utc(2025, 1, 1, 0, 0, 1), last=utc(2025, 2, 1), count=31 * 86_400, complete=True
    )
    assert every(60).slot_range(utc(2025, 1, 1, 0, 0, 1), utc(2025, 1, 1, 0, 0, 59)) is None


def test_cron_slot_range_stops_counting_at_the_limit():
    counted = cron("* * * * * *").slot_range(utc(2025, 1, 1), utc(2025, 1, 2), limit=100)
    assert counted == SlotRange(
        first=utc(2025, 1, 1, 0, 0, 1), last=utc(2025, 1, 1, 0, 1, 40), count=100, complete=False
    )
    exact = cron("0 * * * *").slot_range(utc(2025, 1, 1), utc(2025, 1, 2), limit=100)
    assert exact is not None and (exact.count, exact.complete) == (24, True)


# -- catch-up ----------------------------------------------------------------------------

NOW = datetime(2025, 6, 1, 12, 0, 0, 300_000, tzinfo=UTC)


def test_a_running_scheduler_fires_just_the_current_slot():
    plan = plan_slots(
        every(10),
        handled_until=utc(2025, 6, 1, 11, 59, 50),
        now=NOW,
        catch_up_seconds=300,
        limit=100,
    )
    assert plan.due == (utc(2025, 6, 1, 12),)
    assert plan.skipped is None


def test_downtime_shorter_than_the_window_fires_every_missed_slot_once():
    plan = plan_slots(
        every(60), handled_until=utc(2025, 6, 1, 11, 57), now=NOW, catch_up_seconds=300, limit=100
    )
    assert plan.due == (utc(2025, 6, 1, 11, 58), utc(2025, 6, 1, 11, 59), utc(2025, 6, 1, 12))
    assert plan.skipped is None


def test_downtime_longer_than_the_window_skips_the_older_slots():
    plan = plan_slots(
        every(60), handled_until=utc(2025, 6, 1, 10, 0), now=NOW, catch_up_seconds=300, limit=100
    )
    assert plan.cutoff == NOW - timedelta(seconds=300)
    # 11:55:00.3 is the cutoff: 11:56 .. 12:00 fire, 10:01 .. 11:55 are skipped.
    assert plan.due == (*(utc(2025, 6, 1, 11, m) for m in range(56, 60)), utc(2025, 6, 1, 12))
    assert plan.skipped == SlotRange(
        first=utc(2025, 6, 1, 10, 1), last=utc(2025, 6, 1, 11, 55), count=115, complete=True
    )


def test_a_new_schedule_never_fires_slots_from_before_it_was_defined():
    record = ScheduleRecord(schedule=every(60), active_since=utc(2025, 6, 1, 11, 58, 30))
    plan = plan_slots(
        record.schedule,
        handled_until=record.handled_until,
        now=NOW,
        catch_up_seconds=3600,
        limit=100,
    )
    assert plan.due == (utc(2025, 6, 1, 11, 59), utc(2025, 6, 1, 12))


def test_a_zero_catch_up_still_fires_a_slot_that_is_a_little_late():
    late = NOW + timedelta(seconds=MIN_CATCH_UP_SECONDS - 1)
    plan = plan_slots(
        every(60), handled_until=utc(2025, 6, 1, 11, 59), now=late, catch_up_seconds=0, limit=100
    )
    assert plan.due == (utc(2025, 6, 1, 12),)
    too_late = NOW + timedelta(seconds=MIN_CATCH_UP_SECONDS + 1)
    plan = plan_slots(
        every(60),
        handled_until=utc(2025, 6, 1, 11, 59),
        now=too_late,
        catch_up_seconds=0,
        limit=100,
    )
    assert plan.due == ()
    assert plan.skipped is not None and plan.skipped.first == utc(2025, 6, 1, 12)


def test_the_due_slots_come_in_batches_oldest_first():
    plan = plan_slots(
        every(1),
        handled_until=NOW - timedelta(seconds=250),
        now=NOW,
        catch_up_seconds=300,
        limit=100,
    )
    assert len(plan.due) == 100
    assert plan.due[0] == utc(2025, 6, 1, 11, 55, 51)
    assert list(plan.due) == sorted(plan.due)


def test_handled_until_is_the_latest_of_definition_fire_and_skip():
    record = ScheduleRecord(
        schedule=every(60),
        active_since=utc(2025, 1, 1),
        last_slot=utc(2025, 5, 1),
        skipped_through=utc(2025, 4, 1),
    )
    assert record.handled_until == utc(2025, 5, 1)
    assert record.next_run(NOW) == utc(2025, 6, 1, 12, 1)
    disabled = ScheduleRecord(
        schedule=Schedule(name="s", queue="q", interval=60, enabled=False),
        active_since=utc(2025, 1, 1),
    )
    assert disabled.next_run(NOW) is None


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression '61 * * * *': Bad minute"),
        ({"cron": "* * *"}, "cron expression '* * *' has 3 field(s): give 5"),
        ({"cron": "0 0 30 2 *"}, "invalid cron expression '0 0 30 2 *': Bad day-of-month"),
        ({"interval": 0}, "interval must be at least 1 second (got 0)"),
        ({"interval": -5}, "interval must be at least 1 second (got -5)"),
        ({"interval": float("nan")}, "interval must be at least 1 second"),
        ({}, "give either a cron expression or an interval"),
        (
            {"cron": "* * * * *", "interval": 60},
            "give either a cron expression or an interval, not both",
        ),
        ({"interval": 60, "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"interval": 60, "timezone": "../../etc/passwd"}, "unknown timezone"),
        ({"interval": 60, "name": "two words"}, "schedule name must be 1 to 100 letters"),
        ({"interval": 60, "queue": ""}, "queue name must be 1 to 100 letters"),
        ({"interval": 60, "payload": [1]}, "payload must be a JSON object"),
        ({"interval": 60, "payload": {"_schedule": 1}}, "payload key '_schedule' is reserved"),
        ({"interval": 60, "payload": {"when": datetime.now(UTC)}}, "payload is not JSON"),
    ],
)
def test_invalid_definitions_are_refused_with_one_clear_message(fields, message):
    with pytest.raises(InvalidSchedule) as caught:
        Schedule(**{"name": "s", "queue": "q", **fields})
    assert message in caught.value.message
    assert isinstance(caught.value, DaemonError) and isinstance(caught.value, ValueError)


def test_cron_whitespace_is_normalized():
    assert cron("  */5   *  * * *").cron == "*/5 * * * *"


@pytest.mark.parametrize(
    ("text", "seconds", "shown"),
    [
        ("90", 90, "90s"),
        ("90s", 90, "90s"),
        ("15m", 900, "15m"),
        ("2h", 7200, "2h"),
        ("1d", 86_400, "1d"),
        ("1.5", 1.5, "1.5s"),
        ("120", 120, "2m"),
    ],
)
def test_durations(text, seconds, shown):
    assert parse_duration(text) == seconds
    assert format_duration(seconds) == shown
    assert every(seconds).describe() == f"every {shown}"


@pytest.mark.parametrize("text", ["0", "0.5s", "abc", "5w", "-3", ""])
def test_bad_durations(text):
    with pytest.raises(InvalidSchedule):
        parse_duration(text)


def test_a_job_names_the_slot_it_serves():
    slot = utc(2025, 6, 1, 12)
    job = Job(
        id=1,
        queue="q",
        payload={"x": 1, "_schedule": {"name": "nightly", "slot": slot.isoformat()}},
        priority=0,
        attempt=1,
        max_attempts=5,
        timeout=None,
        backoff=Backoff(),
        created_at=slot,
        run_at=slot,
        started_at=slot,
        lease_token=uuid.uuid4(),
    )
    run = scheduled_run(job)
    assert run is not None and (run.name, run.slot) == ("nightly", slot)
    assert scheduled_run(attrs.evolve(job, payload={"x": 1})) is None


# -- the command line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (
            ["set", "n", "--cron", "61 * * * *", "--queue", "q"],
            "argument --cron: invalid cron expression '61 * * * *': Bad minute",
        ),
        (
            ["set", "n", "--every", "0", "--queue", "q"],
            "argument --every: interval must be at least 1 second",
        ),
        (
            ["set", "n", "--cron", "* * * * *", "--every", "60", "--queue", "q"],
            "argument --every: not allowed with argument --cron",
        ),
        (["set", "n", "--queue", "q"], "one of the arguments --cron --every is required"),
        (["set", "n", "--every", "60"], "the following arguments are required: --queue"),
        (
            ["set", "n", "--every", "60", "--queue", "q", "--timezone", "Berlin"],
            "argument --timezone: unknown timezone 'Berlin'",
        ),
        (
            ["set", "n", "--every", "60", "--queue", "q", "--payload", "{oops"],
            "argument --payload: payload is not valid JSON",
        ),
        (
            ["set", "bad name", "--every", "60", "--queue", "q"],
            "argument NAME: schedule name must be 1 to 100 letters",
        ),
    ],
)
def test_bad_input_exits_2_with_a_clear_error_line(argv, error, capsys):
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["schedules", *argv])
    assert caught.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("triaged schedules set: error: ")
    assert error in last_line


def test_good_input_parses_to_a_handler_with_typed_values():
    args = build_parser().parse_args(
        [
            "schedules",
            "set",
            "nightly",
            "--cron",
            "30 2 * * *",
            "--queue",
            "exports",
            "--timezone",
            "Europe/Berlin",
            "--payload",
            '{"kind": "full"}',
        ]
    )
    assert (args.name, args.cron, args.every, args.timezone, args.payload, args.disabled) == (
        "nightly",
        "30 2 * * *",
        None,
        "Europe/Berlin",
        {"kind": "full"},
        False,
    )
    assert args.handler.__name__ == "_set"
    assert (
        build_parser().parse_args(["schedules", "set", "n", "--every", "15m", "--queue", "q"]).every
        == 900
    )
    assert build_parser().parse_args(["schedules"]).handler.__name__ == "_list"
    assert build_parser().parse_args(["schedules", "--json"]).json is True
    disable = build_parser().parse_args(["schedules", "disable", "n"])
    assert (disable.handler.__name__, disable.enabled) == ("_enable", False)
