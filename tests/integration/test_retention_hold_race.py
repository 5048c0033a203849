"""A legal hold placed while a deletion of its target is in flight (uncommitted on
another connection) waits for it and is refused once the target is gone: no hold is
ever left standing on a document or case that no longer exists."""

from __future__ import annotations

import pytest
import trio

from daemon.modules.audit import AuditContext
from daemon.modules.retention import place_hold
from daemon.shared.errors import ValidationFailed

SYSTEM = AuditContext.system()


async def one(pool, query: str, params: tuple = ()) -> tuple:
    async with pool.transaction() as conn:
        row = await (await conn.execute(query, params)).fetchone()
    assert row is not None
    return row


async def lock_waiters(pool) -> int:
    (count,) = await one(
        pool,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return int(count)


async def hold_while_deleting(pool, *, delete: str, delete_id: int, target_type: str,
                              target_id: int) -> dict:  # fmt: skip
    """Delete on one connection, place the hold on another, then commit the delete."""
    outcome: dict = {}

    async def hold() -> None:
        try:
            outcome["hold"] = await place_hold(
                pool, target_type=target_type, target_id=target_id, reason="lawsuit",
                context=SYSTEM,
            )  # fmt: skip
        except ValidationFailed as exc:
            outcome["refused"] = exc.errors

    async with pool.connection() as deleter:
        await deleter.execute(delete, (delete_id,))  # uncommitted
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold)
            with trio.fail_after(10):
                # The hold either waits on the deleter's row lock (the fix) or is done.
                while not outcome and await lock_waiters(pool) == 0:
                    await trio.sleep(0.02)
            outcome["waited"] = not outcome
            await deleter.commit()
    return outcome


async def standing_holds(pool) -> int:
    (count,) = await one(pool, "SELECT count(*) FROM legal_holds WHERE released_at IS NULL")
    return int(count)


@pytest.mark.parametrize("target_type", ["document", "case"])
async def test_a_hold_waits_for_a_deletion_in_flight_and_is_refused(pool, target_type):
    (document_id,) = await one(
        pool,
        "INSERT INTO documents (title, state, metadata) VALUES ('t', 'completed', '{}')"
        " RETURNING id",
    )
    (case_id,) = await one(
        pool,
        "INSERT INTO cases (document_id, severity, status) VALUES (%s, 'low', 'open') RETURNING id",
        (document_id,),
    )
    target_id = document_id if target_type == "document" else case_id
    outcome = await hold_while_deleting(
        pool,
        # The case goes by its document's cascade, as an admin's document delete does.
        delete="DELETE FROM documents WHERE id = %s",
        delete_id=document_id,
        target_type=target_type,
        target_id=target_id,
    )
    assert "hold" not in outcome, outcome
    assert outcome["waited"] is True
    assert outcome["refused"] == [
        {"field": "target_id", "message": f"no {target_type} with id {target_id}"}
    ]
    assert await standing_holds(pool) == 0
    (placed,) = await one(
        pool, "SELECT count(*) FROM audit_events WHERE action = 'legal_hold.placed'"
    )
    assert placed == 0


async def test_a_hold_on_a_document_whose_deletion_rolls_back_is_placed(pool):
    (document_id,) = await one(
        pool,
        "INSERT INTO documents (title, state, metadata) VALUES ('t', 'completed', '{}')"
        " RETURNING id",
    )
    outcome: dict = {}
    async with pool.connection() as deleter:
        await deleter.execute("DELETE FROM documents WHERE id = %s", (document_id,))
        async with trio.open_nursery() as nursery:

            async def hold() -> None:
                outcome["hold"] = await place_hold(
                    pool, target_type="document", target_id=document_id, reason="lawsuit",
                    context=SYSTEM,
                )  # fmt: skip

            nursery.start_soon(hold)
            with trio.fail_after(10):
                while not outcome and await lock_waiters(pool) == 0:
                    await trio.sleep(0.02)
            assert not outcome  # waiting for the deleter
            await deleter.rollback()
    assert outcome["hold"].target_id == document_id
    assert await standing_holds(pool) == 1
