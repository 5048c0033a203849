"""The audit log: recorded in the caller's transaction, append-only, filtered, paged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from daemon.modules.audit import (
    Actor,
    ActorType,
    AuditContext,
    AuditFilter,
    list_events,
    record,
)
from daemon.shared.errors import ValidationFailed

ALICE = AuditContext(
    actor=Actor(type=ActorType.USER, id=7), client_addr="192.0.2.4", request_id="q"
)


async def test_record_and_read_back(pool):
    async with pool.transaction() as conn:
        event_id = await record(
            conn, ALICE, "user.created", target_type="user", target_id=8, details={"role": "viewer"}
        )
    async with pool.connection() as conn:
        (event,) = (await list_events(conn)).items
    assert event.id == event_id
    assert (event.actor, event.action, event.target_type, event.target_id) == (
        Actor(type=ActorType.USER, id=7), "user.created", "user", "8",
    )  # fmt: skip
    assert (event.client_addr, event.request_id, event.details) == (
        "192.0.2.4",
        "q",
        {"role": "viewer"},
    )
    assert abs(event.at - datetime.now(UTC)) < timedelta(seconds=30)


async def test_events_share_the_fate_of_their_transaction(pool):
    with pytest.raises(RuntimeError):
        async with pool.transaction() as conn:
            await record(conn, ALICE, "user.deleted", target_type="user", target_id=1)
            raise RuntimeError("the change failed")
    async with pool.connection() as conn:
        assert (await list_events(conn)).items == []


async def test_the_table_is_append_only(pool):
    async with pool.transaction() as conn:
        await record(conn, ALICE, "auth.login")
    for statement in (
        "UPDATE audit_events SET action = 'auth.logout'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            async with pool.transaction() as conn:
                await conn.execute(statement)
    async with pool.connection() as conn:
        assert len((await list_events(conn)).items) == 1
    import daemon.modules.audit as audit

    assert not [name for name in audit.__all__ if "delete" in name or "update" in name]


async def test_malformed_actions_are_refused(pool):
    for action in ("Login", "auth", "auth.", "user created"):
        with pytest.raises(psycopg.errors.CheckViolation):
            async with pool.transaction() as conn:
                await record(conn, ALICE, action)


async def test_filters_and_cursor_pagination(pool):
    bob = AuditContext(actor=Actor(type=ActorType.API_KEY, id=3))
    async with pool.transaction() as conn:
        for n in range(7):
            await record(conn, ALICE, "user.updated", target_type="user", target_id=n)
        await record(conn, bob, "api_key.revoked", target_type="api_key", target_id=3)
        await record(conn, AuditContext.system(), "user.created", target_type="user", target_id=1)
    async with pool.connection() as conn:
        seen, cursor = [], None
        for _ in range(20):  # a cursor that never ends fails instead of looping forever
            page = await list_events(
                conn, filters=AuditFilter(action="user.updated"), cursor=cursor, limit=3
            )
            seen += [e.target_id for e in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        else:
            raise AssertionError(f"pagination did not end after 20 pages: {seen}")
        assert seen == ["6", "5", "4", "3", "2", "1", "0"]

        async def ids(**filters):
            return [
                (e.action, e.target_id)
                for e in (await list_events(conn, filters=AuditFilter(**filters))).items
            ]

        assert await ids(actor_type=ActorType.API_KEY) == [("api_key.revoked", "3")]
        assert await ids(actor_type=ActorType.USER, actor_id=7, target_id="2") == [
            ("user.updated", "2")
        ]
        assert await ids(target_type="user", target_id="1") == [
            ("user.created", "1"),
            ("user.updated", "1"),
        ]
        assert await ids(action_prefix="api_key.") == [("api_key.revoked", "3")]
        assert len(await ids(since=datetime.now(UTC) - timedelta(minutes=5))) == 9
        assert await ids(until=datetime.now(UTC) - timedelta(minutes=5)) == []
        exact = await list_events(conn, filters=AuditFilter(action="user.updated"), limit=7)
        assert exact.next_cursor is None
        for bad in ({"cursor": "abc"}, {"cursor": "-1"}, {"limit": 0}, {"limit": 501}):
            with pytest.raises(ValidationFailed):
                await list_events(conn, **bad)
