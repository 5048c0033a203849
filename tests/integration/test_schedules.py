"""Schedules on a real PostgreSQL: each slot fires once however many schedulers run,
catch-up after downtime, disabled and redefined schedules, pruning, errors, the CLI."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import trio

from daemon.cli import build_parser
from daemon.queue.schedule_store import (
    FireOutcome,
    delete_schedule,
    fire_slot,
    list_schedules,
    prune_fires,
    save_schedule,
    set_enabled,
)
from daemon.queue.schedule_timing import Schedule
from daemon.queue.scheduler import CronScheduler, SchedulerOptions
from daemon.shared.db import open_pool


async def define(pool, **fields) -> Schedule:
    schedule = Schedule(**{"queue": "scheduled", **fields})
    async with pool.transaction() as conn:
        await save_schedule(conn, schedule)
    return schedule


async def record(pool, name: str):
    async with pool.connection() as conn:
        return next(r for r in await list_schedules(conn) if r.schedule.name == name)


async def fired_slots(pool, name: str) -> list[datetime]:
    """The slots of the jobs enqueued for ``name``, in order (duplicates kept)."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT (payload->'_schedule'->>'slot')::timestamptz FROM jobs"
                " WHERE payload->'_schedule'->>'name' = %s ORDER BY 1",
                (name,),
            )
        ).fetchall()
    return [row[0] for row in rows]


async def fires(pool, name: str) -> dict[datetime, int]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT slot, job_id FROM schedule_fires WHERE schedule = %s", (name,)
            )
        ).fetchall()
    return dict(rows)


async def execute(pool, sql: str, *params) -> None:
    async with pool.transaction() as conn:
        await conn.execute(sql, params)


async def wait_for(check, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not await check():
            await trio.sleep(0.02)


def assert_every_second(slots: list[datetime], after: datetime) -> None:
    """Slots are the whole seconds from the first one after ``after``, none missing."""
    first = (after + timedelta(seconds=1)).replace(microsecond=0)
    assert slots == [first + timedelta(seconds=i) for i in range(len(slots))]


async def test_three_schedulers_fire_each_slot_exactly_once(pool, database_url):
    await define(pool, name="interval", interval=1, payload={"kind": "interval"})
    await define(pool, name="cron", cron="* * * * * *", timezone="Europe/Berlin")
    since = {name: (await record(pool, name)).active_since for name in ("interval", "cron")}
    options = SchedulerOptions(reload_interval=0.5)
    async with (
        open_pool(database_url) as a,
        open_pool(database_url) as b,
        open_pool(database_url) as c,
    ):
        schedulers = [CronScheduler(p, options) for p in (a, b, c)]
        async with trio.open_nursery() as nursery:
            for scheduler in schedulers:
                await nursery.start(scheduler.run)
            await trio.sleep(3.5)
            for scheduler in schedulers:
                scheduler.request_stop()
        stopped = datetime.now(UTC)
    for name in ("interval", "cron"):
        slots = await fired_slots(pool, name)
        assert len(slots) >= 3, slots
        assert len(set(slots)) == len(slots), f"{name}: a slot fired twice: {slots}"
        assert_every_second(slots, since[name])
        assert slots[-1] > stopped - timedelta(seconds=1.5)
        fired = await fires(pool, name)
        assert sorted(fired) == slots
        state = await record(pool, name)
        assert state.last_slot == slots[-1]
        assert state.last_job_id == fired[slots[-1]]
    async with pool.connection() as conn:
        payload = (
            await (
                await conn.execute("SELECT payload FROM jobs WHERE id = %s", (fired[slots[-1]],))
            ).fetchone()
        )[0]
    assert payload == {"_schedule": {"name": "cron", "slot": slots[-1].isoformat()}}


T = datetime(2031, 1, 1, 12, 0, 5, tzinfo=UTC)  # the frozen "now" of the catch-up tests


async def test_after_downtime_recent_slots_fire_once_and_older_ones_are_skipped_once(pool, caplog):
    await define(pool, name="tens", interval=10, payload={"n": 1})
    # Defined two hours ago, last fired an hour ago, then nothing ran until T.
    await execute(
        pool,
        "UPDATE schedules SET active_since = %s, last_slot = %s",
        T - timedelta(hours=2),
        T - timedelta(hours=1, seconds=5),
    )
    options = SchedulerOptions(catch_up_seconds=60, reload_interval=0.2)
    schedulers = [CronScheduler(pool, options, clock=lambda: T) for _ in range(3)]
    expected = [T - timedelta(seconds=55) + timedelta(seconds=10 * i) for i in range(6)]

    async def caught_up() -> bool:
        return (await record(pool, "tens")).last_slot == expected[-1]

    with caplog.at_level(logging.DEBUG, logger="triaged.queue.schedules"):
        async with trio.open_nursery() as nursery:
            for scheduler in schedulers:
                await nursery.start(scheduler.run)
            await wait_for(caught_up)
            await trio.sleep(0.5)  # room for a duplicate fire or skip, if there were one
            for scheduler in schedulers:
                scheduler.request_stop()
    assert await fired_slots(pool, "tens") == expected  # 11:59:10 .. 12:00:00
    skips = [r for r in caplog.records if getattr(r, "action", None) == "schedule.skipped"]
    assert len(skips) == 1, [r.getMessage() for r in skips]
    skip = skips[0]
    assert (skip.levelname, skip.schedule, skip.count, skip.count_complete) == (
        "WARNING",
        "tens",
        354,
        True,
    )
    assert (skip.first_slot, skip.last_slot) == (
        "2031-01-01T11:00:10+00:00",
        "2031-01-01T11:59:00+00:00",
    )
    assert "skipped 354 missed slot(s)" in skip.getMessage()
    fired_logs = [r for r in caplog.records if getattr(r, "action", None) == "schedule.fired"]
    assert sorted(r.slot for r in fired_logs) == [s.isoformat() for s in expected]
    assert {r.levelname for r in fired_logs} == {"DEBUG"}  # every 10 s: too often for INFO
    state = await record(pool, "tens")
    assert state.skipped_through == T - timedelta(seconds=60)
    assert state.next_run(T) == T + timedelta(seconds=5)


async def test_a_catch_up_window_longer_than_the_downtime_fires_every_missed_slot(pool):
    await define(pool, name="hourly", cron="0 * * * *", timezone="Europe/Berlin")
    await execute(pool, "UPDATE schedules SET active_since = %s", T - timedelta(hours=5))
    scheduler = CronScheduler(pool, SchedulerOptions(catch_up_seconds=6 * 3600), clock=lambda: T)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await wait_for(lambda: _has_fired(pool, "hourly", 5))
        scheduler.request_stop()
    assert await fired_slots(pool, "hourly") == [
        datetime(2031, 1, 1, h, tzinfo=UTC) for h in range(8, 13)
    ]
    assert (await record(pool, "hourly")).skipped_through is None


async def _has_fired(pool, name: str, count: int) -> bool:
    return len(await fired_slots(pool, name)) >= count


async def test_disabled_schedules_do_not_fire_and_enabling_does_not_backfill(pool):
    await define(pool, name="on", interval=1)
    await define(pool, name="off", interval=1, enabled=False)
    scheduler = CronScheduler(pool, SchedulerOptions(reload_interval=0.2))
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await wait_for(lambda: _has_fired(pool, "on", 2))
        assert await fired_slots(pool, "off") == []
        enabling = datetime.now(UTC)
        async with pool.transaction() as conn:
            await set_enabled(conn, "off", True)
        await wait_for(lambda: _has_fired(pool, "off", 1))
        scheduler.request_stop()
    # The slots of the disabled time are inside the catch-up window, yet none fired.
    slots = await fired_slots(pool, "off")
    assert slots[0] > enabling, (slots, enabling)
    assert_every_second(slots, (await record(pool, "off")).active_since)


async def test_a_fire_checks_the_definition_it_was_computed_from(pool):
    await define(pool, name="s", interval=60)
    since = (await record(pool, "s")).active_since
    slot = (since + timedelta(minutes=1)).replace(second=0, microsecond=0)

    first = await fire_slot(pool, "s", since, slot)
    assert first.outcome is FireOutcome.FIRED and first.job_id is not None
    assert (await fire_slot(pool, "s", since, slot)).outcome is FireOutcome.HANDLED
    # An older slot never fires after a newer one, even once the fire records are gone.
    await execute(pool, "DELETE FROM schedule_fires")
    assert (await fire_slot(pool, "s", since, slot)).outcome is FireOutcome.HANDLED
    assert (
        await fire_slot(pool, "s", since, slot - timedelta(minutes=1))
    ).outcome is FireOutcome.HANDLED

    later = slot + timedelta(minutes=1)
    async with pool.transaction() as conn:
        await set_enabled(conn, "s", False)
    assert (await fire_slot(pool, "s", since, later)).outcome is FireOutcome.STALE
    await define(pool, name="s", interval=30)  # redefined (and enabled again)
    assert (await fire_slot(pool, "s", since, later)).outcome is FireOutcome.STALE
    async with pool.transaction() as conn:
        await delete_schedule(conn, "s")
    assert (await fire_slot(pool, "s", since, later)).outcome is FireOutcome.STALE
    assert await fired_slots(pool, "s") == [slot]


async def test_saving_the_same_definition_keeps_its_slots_and_a_new_timing_restarts_them(pool):
    await define(pool, name="s", cron="*/5 * * * *", payload={"v": 1})
    since = (await record(pool, "s")).active_since
    await define(pool, name="s", cron="*/5 * * * *", payload={"v": 2}, queue="other")
    state = await record(pool, "s")
    assert (state.active_since, state.schedule.payload, state.schedule.queue) == (
        since,
        {"v": 2},
        "other",
    )
    await define(pool, name="s", cron="*/5 * * * *", timezone="Asia/Tokyo")
    assert (await record(pool, "s")).active_since > since


async def test_old_fire_records_are_pruned(pool):
    await define(pool, name="s", interval=1)
    await execute(
        pool,
        "INSERT INTO schedule_fires (schedule, slot, fired_at)"
        " SELECT 's', now() - make_interval(secs => g), now() - make_interval("
        "secs => g) FROM generate_series(1, 2500) g",
    )
    assert await prune_fires(pool, keep_seconds=1000.5, batch=400) == 1500
    assert len(await fires(pool, "s")) == 1000


async def test_the_scheduler_survives_database_errors(pool, caplog):
    await define(pool, name="s", interval=1)
    scheduler = CronScheduler(pool, SchedulerOptions(reload_interval=0.2))
    with caplog.at_level(logging.WARNING, logger="triaged.queue.schedules"):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await wait_for(lambda: _has_fired(pool, "s", 1))
            await execute(pool, "ALTER TABLE schedule_fires RENAME TO schedule_fires_away")
            await wait_for(lambda: _logged(caplog, "schedule.pass_failed"))
            await execute(pool, "ALTER TABLE schedule_fires_away RENAME TO schedule_fires")
            broken_until = datetime.now(UTC)
            await wait_for(lambda: _fired_after(pool, "s", broken_until))
            scheduler.request_stop()
    slots = await fired_slots(pool, "s")
    assert len(set(slots)) == len(slots)


async def _logged(caplog, action: str) -> bool:
    return any(getattr(r, "action", None) == action for r in caplog.records)


async def _fired_after(pool, name: str, moment: datetime) -> bool:
    return any(slot > moment for slot in await fired_slots(pool, name))


# -- the command line --------------------------------------------------------------------


async def run_cli(pool, *argv: str) -> int:
    args = build_parser().parse_args(["schedules", *argv])
    return await args.handler(args, pool)


async def test_the_cli_defines_lists_and_manages_schedules(pool, capsys):
    assert (
        await run_cli(
            pool,
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
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith(
        "schedule nightly created: cron 30 2 * * * (Europe/Berlin) -> queue exports; next run 20"
    )
    assert (
        await run_cli(pool, "set", "beat", "--every", "15m", "--queue", "ping", "--disabled") == 0
    )
    assert (
        "schedule beat created: every 15m (UTC) -> queue ping; next run -"
        in capsys.readouterr().out
    )

    assert await run_cli(pool) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "QUEUE",
        "ENABLED",
        "LAST",
        "RUN",
        "NEXT",
        "RUN",
    ]
    assert lines[1].split()[:5] == ["beat", "every", "15m", "UTC", "ping"]
    assert lines[1].split()[5:] == ["no", "-", "-"]
    nightly = lines[2].split()
    assert nightly[:9] == ["nightly", "cron", "30", "2", "*", "*", "*", "Europe/Berlin", "exports"]
    assert nightly[9:11] == ["yes", "-"]
    assert nightly[12] == "02:30:00" and nightly[13] in ("CET", "CEST")

    assert await run_cli(pool, "enable", "beat") == 0
    assert capsys.readouterr().out.startswith("schedule beat enabled; next run 20")
    assert await run_cli(pool, "--json") == 0
    listed = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert listed["beat"]["enabled"] is True and listed["beat"]["interval_seconds"] == 900
    assert listed["nightly"]["payload"] == {"kind": "full"}
    assert listed["nightly"]["next_run"].endswith(("T02:30:00+01:00", "T02:30:00+02:00"))

    assert await run_cli(pool, "disable", "nightly") == 0
    assert capsys.readouterr().out == "schedule nightly disabled; next run -\n"
    assert await run_cli(pool, "delete", "beat") == 0
    assert capsys.readouterr().out == "schedule beat deleted\n"
    assert await run_cli(pool, "delete", "beat") == 1
    assert capsys.readouterr().err == "triaged: no schedule named 'beat'\n"
    assert await run_cli(pool, "enable", "nope") == 1
    assert [r.schedule.name for r in await _all(pool)] == ["nightly"]


async def _all(pool):
    async with pool.connection() as conn:
        return await list_schedules(conn)


async def test_the_cli_lists_last_runs_and_reports_rows_it_cannot_read(pool, capsys):
    await define(pool, name="s", interval=60, timezone="Europe/Berlin")
    since = (await record(pool, "s")).active_since
    slot = (since + timedelta(minutes=1)).replace(second=0, microsecond=0)
    job_id = (await fire_slot(pool, "s", since, slot)).job_id
    await execute(
        pool,
        "INSERT INTO schedules (name, cron, queue, timezone)"
        " VALUES ('broken', '* * * * *', 'q', 'Nowhere/Land')",
    )
    assert await run_cli(pool) == 0
    captured = capsys.readouterr()
    last_run = slot.astimezone(
        Schedule(name="s", queue="q", interval=60, timezone="Europe/Berlin").zone
    )
    assert f"{last_run:%Y-%m-%d %H:%M:%S %Z} (job {job_id})" in captured.out
    assert "broken" not in captured.out
    assert captured.err == (
        "triaged: schedule cannot run: broken: unknown timezone "
        "'Nowhere/Land' (want an IANA name such as 'Europe/Berlin' or "
        "'UTC')\n"
    )
