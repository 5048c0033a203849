"""Declared schedules on a real PostgreSQL: ``sync_declared_schedules`` inserts what the
code declares, keeps an operator's changes, retires what is no longer declared, never
touches an operator's own schedules, and serializes concurrent syncs."""

from __future__ import annotations

import json
import logging

import pytest
import trio

from daemon.cli import build_parser
from daemon.queue import (
    InvalidSchedule,
    Schedule,
    SyncReport,
    sync_declared_schedules,
)
from daemon.queue.schedule_store import list_schedules, save_schedule, set_enabled

SESSIONS = Schedule(name="auth.sessions", queue="housekeeping", cron="*/5 * * * *")
EXPORTS = Schedule(
    name="exports.nightly",
    queue="exports",
    cron="30 2 * * *",
    timezone="Europe/Berlin",
    payload={"kind": "full"},
)


async def records(pool):
    async with pool.connection() as conn:
        return {r.schedule.name: r for r in await list_schedules(conn)}


async def run_cli(pool, *argv: str) -> int:
    args = build_parser().parse_args(["schedules", *argv])
    return await args.handler(args, pool)


async def test_sync_inserts_the_declared_schedules_once(pool):
    report = await sync_declared_schedules(pool, [SESSIONS, EXPORTS])
    assert report == SyncReport(inserted=("auth.sessions", "exports.nightly"))
    stored = await records(pool)
    assert stored["exports.nightly"].schedule == EXPORTS
    assert stored["auth.sessions"].schedule == SESSIONS
    assert all(r.declared and r.retired_at is None for r in stored.values())
    since = stored["exports.nightly"].active_since

    # Idempotent: the same declarations again change nothing, not even active_since.
    assert await sync_declared_schedules(pool, [EXPORTS, SESSIONS]) == SyncReport()
    assert (await records(pool))["exports.nightly"].active_since == since


async def test_an_operators_timing_and_enabled_flag_survive_a_resync(pool):
    await sync_declared_schedules(pool, [SESSIONS])
    operator = Schedule(name="auth.sessions", queue="housekeeping", interval=600)
    async with pool.transaction() as conn:
        await save_schedule(conn, operator)
        await set_enabled(conn, "auth.sessions", False)

    assert await sync_declared_schedules(pool, [SESSIONS]) == SyncReport()
    stored = (await records(pool))["auth.sessions"]
    assert stored.schedule.interval == 600 and stored.schedule.cron is None
    assert stored.schedule.enabled is False

    # The code changes the timing too: the operator's is still kept, and said so.
    code_change = Schedule(name="auth.sessions", queue="housekeeping", cron="*/10 * * * *")
    report = await sync_declared_schedules(pool, [code_change])
    assert report.operator_timing_kept == ("auth.sessions",)
    stored = (await records(pool))["auth.sessions"]
    assert stored.schedule.interval == 600 and stored.schedule.enabled is False
    # ... and the next sync with that declaration has nothing to say.
    assert await sync_declared_schedules(pool, [code_change]) == SyncReport()


async def test_the_codes_queue_and_payload_apply_even_over_an_operators_timing(pool):
    await sync_declared_schedules(pool, [EXPORTS])
    assert await run_cli(pool, "set", "exports.nightly", "--every", "1h", "--queue", "other") == 0
    moved = Schedule(
        name="exports.nightly",
        queue="exports2",
        cron="30 2 * * *",
        timezone="Europe/Berlin",
        payload={"kind": "delta"},
    )
    report = await sync_declared_schedules(pool, [moved])
    assert report.updated == ("exports.nightly",)
    stored = (await records(pool))["exports.nightly"].schedule
    assert (stored.queue, dict(stored.payload)) == ("exports2", {"kind": "delta"})
    assert stored.interval == 3600 and stored.cron is None


async def test_a_code_change_of_timing_applies_when_no_operator_changed_it(pool):
    await sync_declared_schedules(pool, [SESSIONS])
    before = (await records(pool))["auth.sessions"]
    changed = Schedule(
        name="auth.sessions", queue="housekeeping", cron="*/10 * * * *", timezone="Europe/Paris"
    )
    report = await sync_declared_schedules(pool, [changed])
    assert report == SyncReport(updated=("auth.sessions",))
    after = (await records(pool))["auth.sessions"]
    assert after.schedule == changed
    assert after.active_since > before.active_since  # the new timing's slots start now

    # An operator who only disabled it does not stop the code's timing changes.
    async with pool.transaction() as conn:
        await set_enabled(conn, "auth.sessions", False)
    await sync_declared_schedules(pool, [SESSIONS])
    after = (await records(pool))["auth.sessions"].schedule
    assert after.cron == "*/5 * * * *" and after.timezone == "UTC" and not after.enabled


async def test_a_schedule_no_longer_declared_is_disabled_once_and_logged(pool, caplog):
    await sync_declared_schedules(pool, [SESSIONS, EXPORTS])
    with caplog.at_level(logging.INFO, logger="triaged.queue.schedules"):
        report = await sync_declared_schedules(pool, [SESSIONS])
    assert report == SyncReport(retired=("exports.nightly",))
    assert [r.action for r in caplog.records if r.action == "schedule.retired"] == [
        "schedule.retired"
    ]
    assert [r.schedule for r in caplog.records if r.action == "schedule.retired"] == [
        "exports.nightly"
    ]
    stored = (await records(pool))["exports.nightly"]
    assert stored.schedule.enabled is False and stored.retired_at is not None
    assert stored.next_run(stored.active_since) is None

    # Retired once: the next sync leaves it, even when an operator enabled it meanwhile.
    async with pool.transaction() as conn:
        await set_enabled(conn, "exports.nightly", True)
    assert await sync_declared_schedules(pool, [SESSIONS]) == SyncReport()
    assert (await records(pool))["exports.nightly"].schedule.enabled is True

    # Declared again: no longer retired, and enabled (as it was when retired).
    async with pool.transaction() as conn:
        await set_enabled(conn, "exports.nightly", False)
    report = await sync_declared_schedules(pool, [SESSIONS, EXPORTS])
    assert report == SyncReport(updated=("exports.nightly",))
    stored = (await records(pool))["exports.nightly"]
    assert stored.schedule.enabled is True and stored.retired_at is None


async def test_a_retired_schedule_an_operator_had_disabled_stays_disabled(pool):
    await sync_declared_schedules(pool, [SESSIONS])
    async with pool.transaction() as conn:
        await set_enabled(conn, "auth.sessions", False)
    assert (await sync_declared_schedules(pool, [])).retired == ("auth.sessions",)
    await sync_declared_schedules(pool, [SESSIONS])
    stored = (await records(pool))["auth.sessions"]
    assert stored.retired_at is None and stored.schedule.enabled is False


async def test_an_operators_own_schedules_are_never_touched(pool, caplog):
    mine = Schedule(name="auth.sessions", queue="mine", interval=30)
    other = Schedule(name="reports", queue="mine", cron="0 8 * * 1")
    async with pool.transaction() as conn:
        await save_schedule(conn, mine)
        await save_schedule(conn, other)
    with caplog.at_level(logging.INFO, logger="triaged.queue.schedules"):
        report = await sync_declared_schedules(pool, [SESSIONS])
    assert report == SyncReport(conflicts=("auth.sessions",))
    assert "schedule.declaration_conflict" in [r.action for r in caplog.records]
    stored = await records(pool)
    assert stored["auth.sessions"].schedule == mine and not stored["auth.sessions"].declared
    assert stored["reports"].schedule == other and not stored["reports"].declared
    assert (await sync_declared_schedules(pool, [])) == SyncReport()  # nothing to retire
    assert (await records(pool))["reports"].schedule.enabled is True


async def test_concurrent_syncs_do_not_conflict(pool):
    reports: list[SyncReport] = []

    async def sync() -> None:
        reports.append(await sync_declared_schedules(pool, [SESSIONS, EXPORTS]))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(sync)
    assert len(reports) == 5
    assert sorted(r.inserted for r in reports) == [()] * 4 + [("auth.sessions", "exports.nightly")]
    assert set(await records(pool)) == {"auth.sessions", "exports.nightly"}


async def test_a_name_declared_twice_is_refused(pool):
    with pytest.raises(InvalidSchedule, match="declared twice"):
        await sync_declared_schedules(pool, [SESSIONS, SESSIONS])
    assert await records(pool) == {}


async def test_the_cli_marks_built_in_schedules(pool, capsys):
    await sync_declared_schedules(pool, [SESSIONS, EXPORTS])
    async with pool.transaction() as conn:
        await save_schedule(conn, Schedule(name="mine", queue="q", interval=60))
    await sync_declared_schedules(pool, [SESSIONS])
    assert await run_cli(pool) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "BUILT-IN"
    by_name = {line.split()[0]: line.split() for line in lines[1:]}
    assert by_name["auth.sessions"][-1] == "yes"
    assert by_name["exports.nightly"][-1] == "retired"
    assert by_name["mine"][-1] == "no"
    # The next run of an enabled built-in schedule is listed.
    # ... LAST RUN, NEXT RUN (date, time, zone), BUILT-IN
    assert by_name["auth.sessions"][-5] == "-"  # no last run yet
    assert by_name["auth.sessions"][-4].startswith("20")  # the next one

    assert await run_cli(pool, "--json") == 0
    listed = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert listed["auth.sessions"]["built_in"] is True
    assert listed["exports.nightly"]["retired_at"] is not None
    assert listed["mine"]["built_in"] is False
