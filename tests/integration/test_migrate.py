"""Migrations on a real PostgreSQL: once each, under a lock, checksums enforced."""

from __future__ import annotations

import hashlib

import pytest
import trio

from daemon.shared.db import migrate
from daemon.shared.db.migrate import Migration
from daemon.shared.db.pool import open_pool
from daemon.shared.errors import ChecksumMismatch, MigrationError


def _migration(version: int, sql: str, name: str = "step") -> Migration:
    return Migration(
        version=version, name=name, sql=sql, checksum=hashlib.sha256(sql.encode()).hexdigest()
    )


async def _versions(pool) -> list[int]:
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()
    return sorted(r[0] for r in rows)


async def test_shipped_migrations_apply_to_an_empty_database_and_then_nothing(database_url):
    shipped = migrate.discover()
    assert shipped and [m.version for m in shipped] == sorted(m.version for m in shipped)
    async with open_pool(database_url) as pool:
        applied = await migrate.apply(pool)
        assert [m.version for m in applied] == [m.version for m in shipped]
        assert await migrate.apply(pool) == []
        assert await _versions(pool) == [m.version for m in shipped]
        statuses = await migrate.status(pool)
        assert {s.state for s in statuses} == {"applied"}
        async with pool.connection() as conn:
            assert await migrate.current_version(conn) == migrate.latest_version()


async def test_concurrent_runs_apply_each_migration_once(database_url):
    # The first migration sleeps so the runs really overlap.
    migrations = [
        _migration(1, "SELECT pg_sleep(0.3); CREATE TABLE t1 (id int)"),
        _migration(2, "CREATE TABLE t2 (id int)"),
    ]
    results: list[list[int]] = []
    async with open_pool(database_url, max_size=2) as pool_a, open_pool(database_url) as pool_b:

        async def run(pool) -> None:
            results.append([m.version for m in await migrate.apply(pool, migrations)])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, pool_a)
            nursery.start_soon(run, pool_a)
            nursery.start_soon(run, pool_b)
        assert sorted(results) == [[], [], [1, 2]]
        assert await _versions(pool_a) == [1, 2]


async def test_a_changed_applied_file_stops_the_run(database_url):
    async with open_pool(database_url) as pool:
        await migrate.apply(pool, [_migration(1, "CREATE TABLE a (id int)")])
        changed = [
            _migration(1, "CREATE TABLE a (id bigint)"),
            _migration(2, "CREATE TABLE b (id int)"),
        ]
        with pytest.raises(ChecksumMismatch, match=r"0001_step\.sql was changed"):
            await migrate.apply(pool, changed)
        assert await _versions(pool) == [1]  # nothing after the mismatch was applied
        statuses = await migrate.status(pool, changed)
        assert [s.state for s in statuses] == ["changed", "pending"]


async def test_a_database_ahead_of_the_code_is_refused(database_url):
    async with open_pool(database_url) as pool:
        await migrate.apply(pool, [_migration(1, "SELECT 1"), _migration(2, "SELECT 2")])
        with pytest.raises(MigrationError, match="newer version"):
            await migrate.apply(pool, [_migration(1, "SELECT 1")])


async def test_a_failing_migration_leaves_the_previous_version(database_url):
    async with open_pool(database_url) as pool:
        with pytest.raises(MigrationError, match=r"0002_step\.sql failed"):
            await migrate.apply(
                pool,
                [
                    _migration(1, "CREATE TABLE ok (id int)"),
                    _migration(2, "CREATE TABLE half (id int); SELECT no_such_function()"),
                ],
            )
        assert await _versions(pool) == [1]
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT to_regclass('half')")).fetchone()
        assert row == (None,)
        # The lock was released: another run can proceed.
        await migrate.apply(pool, [_migration(1, "CREATE TABLE ok (id int)")])
