"""The queue ships its own migrations (daemon/queue/migrations): the files moved there
keep their versions and checksums, so a database migrated before the move stays valid and
only the new versions are applied to it."""

from __future__ import annotations

from daemon.shared.db import migrate, open_pool

# sha256 of the files as daemon/migrations shipped them before the move.
RECORDED = {
    2: ("job_queue", "222c726d8783875188b6c3697107fc9f3018f07ec6ce567f09eae13458acb6c0"),
    5: ("enqueue_function", "c3b610d0299c26d162e0788227949ed7e35c006b04977183a71eb7b32610f590"),
}


def test_moved_migrations_keep_their_versions_names_and_checksums():
    shipped = {m.version: (m.name, m.checksum) for m in migrate.discover()}
    for version, recorded in RECORDED.items():
        assert shipped[version] == recorded
    queue_only = {m.version for m in migrate.discover("daemon.queue.migrations")}
    assert {2, 5, 6, 7} <= queue_only
    assert not queue_only & {m.version for m in migrate.discover("daemon.migrations")}


async def test_a_database_migrated_before_the_move_gets_only_the_new_versions(database_url):
    shipped = migrate.discover()
    before_move = [m for m in shipped if m.version <= 5]
    async with open_pool(database_url) as pool:
        assert [m.version for m in await migrate.apply(pool, before_move)] == [1, 2, 3, 4, 5]
        applied = await migrate.apply(pool)
        assert [m.version for m in applied] == [m.version for m in shipped if m.version > 5]
        assert {s.state for s in await migrate.status(pool)} == {"applied"}
        async with pool.connection() as conn:
            row = await (
                await conn.execute("SELECT queue_default_max_attempts(), queue_notify_channel()")
            ).fetchone()
        assert row == (5, "triaged_queue")
