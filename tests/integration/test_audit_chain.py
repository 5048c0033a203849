"""The audit log's hash chain on a real database: every writer's events are chained
(concurrent ones too), the log stays append-only except for the purge, and verification
names the first broken event whatever was done to the table directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import trio

from daemon.modules.audit import (
    AuditContext,
    NewEvent,
    checkpoint_key,
    purge_batch,
    purge_bound,
    record,
    record_many,
    verify,
)

SYSTEM = AuditContext.system()
KEY = b"a checkpoint key of some length"


async def add_events(pool, count: int, action: str = "test.event") -> list[int]:
    ids = []
    async with pool.transaction() as conn:
        for n in range(count):
            ids.append(await record(conn, SYSTEM, action, details={"n": n, "text": 'é\n"x"'}))
    return ids


async def check(pool, key: bytes | None = None):
    async with pool.connection() as conn:
        return await verify(conn, key)


async def tamper(pool, statement: str, params=()) -> None:
    """Change the table as a superuser would: with its triggers off."""
    async with pool.transaction() as conn:
        await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
        await conn.execute(statement, params)
        await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")


async def test_events_of_every_writer_are_chained_in_commit_order(pool):
    async def writer(n: int) -> None:
        for i in range(15):
            async with pool.transaction() as conn:
                await record(conn, SYSTEM, "test.concurrent", details={"writer": n, "i": i})

    async with trio.open_nursery() as nursery:
        for n in range(6):
            nursery.start_soon(writer, n)
    async with pool.transaction() as conn:
        await record_many(conn, [NewEvent(context=SYSTEM, action="test.many") for _ in range(5)])
    result = await check(pool)
    assert result.ok, result.problem
    assert result.events == result.head_seq == 95
    async with pool.connection() as conn:
        seqs = [
            r[0]
            for r in await (
                await conn.execute("SELECT seq FROM audit_events ORDER BY seq")
            ).fetchall()
        ]
    assert seqs == list(range(1, 96))


async def test_the_log_refuses_update_delete_and_truncate(pool):
    [event] = await add_events(pool, 1)
    for statement in (
        "UPDATE audit_events SET action = 'x.y' WHERE id = %s",
        "DELETE FROM audit_events WHERE id = %s",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with pool.transaction() as conn:
                await conn.execute(statement, (event,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with pool.transaction() as conn:
            await conn.execute("TRUNCATE audit_events")
    assert (await check(pool)).ok


async def test_verify_names_a_changed_event(pool):
    ids = await add_events(pool, 10)
    await tamper(pool, "UPDATE audit_events SET details = '{\"n\": 0}' WHERE id = %s", (ids[6],))
    result = await check(pool)
    assert not result.ok and result.event_id == ids[6]
    assert "was changed" in (result.problem or "")


async def test_verify_names_the_event_after_a_removed_one(pool):
    ids = await add_events(pool, 10)
    await tamper(pool, "DELETE FROM audit_events WHERE id = %s", (ids[3],))
    result = await check(pool)
    assert not result.ok and result.event_id == ids[4]
    assert "does not link" in (result.problem or "")


async def test_verify_notices_removed_newest_and_oldest_events(pool):
    ids = await add_events(pool, 10)
    await tamper(pool, "DELETE FROM audit_events WHERE id = %s", (ids[-1],))
    newest = await check(pool)
    assert not newest.ok and newest.event_id == ids[-2] and "chain head" in (newest.problem or "")
    await tamper(pool, "DELETE FROM audit_events WHERE id = %s", (ids[0],))
    oldest = await check(pool)
    assert not oldest.ok and oldest.event_id == ids[1]


async def test_the_purge_leaves_a_signed_checkpoint_verify_starts_from(pool):
    async with pool.transaction() as conn:
        await conn.execute(
            "INSERT INTO audit_events (at, actor_type, action) "
            "SELECT now() - interval '800 days', 'system', 'test.old' FROM generate_series(1, 12)"
        )
    recent = await add_events(pool, 5)
    async with pool.transaction() as conn:
        below = await purge_bound(conn, datetime.now(UTC) - timedelta(days=730))
        signer = await checkpoint_key(conn, KEY)
        assert await purge_batch(conn, below_seq=below, limit=5, signer=signer) == 5
    async with pool.transaction() as conn:
        assert await purge_batch(conn, below_seq=below, limit=500, signer=signer) == 7
    result = await check(pool, KEY)
    assert result.ok and result.events == 5 and result.checkpoint_id is not None
    assert not (await check(pool, None)).ok  # signed with the configured key, not given
    wrong = await check(pool, b"another key of some length")
    assert not wrong.ok and "bad signature" in (wrong.problem or "")
    # A forged checkpoint (moved past an event) fails its signature.
    async with pool.transaction() as conn:
        await conn.execute("UPDATE audit_checkpoints SET last_seq = last_seq + 1")
    assert not (await check(pool, KEY)).ok
    async with pool.transaction() as conn:
        await conn.execute("UPDATE audit_checkpoints SET last_seq = last_seq - 1")
    # Removing the oldest remaining event behind the checkpoint's back is found.
    await tamper(pool, "DELETE FROM audit_events WHERE id = %s", (recent[0],))
    result = await check(pool, KEY)
    assert not result.ok and result.event_id == recent[1]


async def test_without_a_configured_key_the_installation_key_signs(pool):
    async with pool.transaction() as conn:
        await conn.execute(
            "INSERT INTO audit_events (at, actor_type, action) "
            "SELECT now() - interval '800 days', 'system', 'test.old' FROM generate_series(1, 3)"
        )
        signer = await checkpoint_key(conn, None)
        assert signer.source == "installation" and len(signer.key) == 32
        below = await purge_bound(conn, datetime.now(UTC) - timedelta(days=730))
        assert await purge_batch(conn, below_seq=below, limit=10, signer=signer) == 3
    result = await check(pool)
    assert result.ok and result.events == 0 and result.head_seq == 3
