"""Users on a real database: creation, lookup, updates, the last-admin rule, audit."""

from __future__ import annotations

import pytest
import trio

from daemon.modules.audit import Actor, ActorType, AuditContext, AuditFilter, list_events
from daemon.modules.auth import (
    AuthPolicy,
    DuplicateEmail,
    InvalidAccountData,
    LastAdmin,
    Role,
    Unauthenticated,
    UserNotFound,
    WeakPassword,
    authenticate,
    create_user,
    delete_user,
    get_user,
    get_user_by_email,
    list_users,
    login,
    set_password,
    update_user,
)

FAST = AuthPolicy(hash_time_cost=1, hash_memory_kib=8192, hash_parallelism=1)
ADMIN_CTX = AuditContext(actor=Actor(type=ActorType.USER, id=None), request_id="req-1")
SYSTEM = AuditContext.system(request_id="test")
PASSWORD = "correct horse battery"


async def make(pool, email, role=Role.ADMIN, **kwargs):
    return await create_user(
        pool, email=email, password=PASSWORD, role=role, policy=FAST, context=SYSTEM, **kwargs
    )


async def events(pool, **filters):
    async with pool.connection() as conn:
        page = await list_events(conn, filters=AuditFilter(**filters), limit=500)
    return page.items


async def test_create_get_list(pool):
    alice = await make(pool, " Alice@Example.org ", Role.ANALYST, display_name=" Alice ")
    assert (alice.email, alice.display_name, alice.role, alice.active) == (
        "Alice@Example.org",
        "Alice",
        Role.ANALYST,
        True,
    )
    assert alice.created_at == alice.updated_at
    bob = await make(pool, "bob@example.org", "viewer")
    async with pool.connection() as conn:
        assert await get_user(conn, alice.id) == alice
        assert await get_user_by_email(conn, "ALICE@example.ORG") == alice
        assert (await list_users(conn)).items == [alice, bob]
        assert (await list_users(conn, role=Role.VIEWER)).items == [bob]
        first = await list_users(conn, limit=1)
        assert first.items == [alice] and first.next_cursor == str(alice.id)
        last = await list_users(conn, cursor=first.next_cursor, limit=1)
        assert last.items == [bob] and last.next_cursor is None
        with pytest.raises(UserNotFound):
            await get_user(conn, 999)
        with pytest.raises(UserNotFound):
            await get_user_by_email(conn, "nobody@example.org")
        row = await (await conn.execute("SELECT password_hash FROM users")).fetchone()
    assert row[0].startswith("$argon2id$") and PASSWORD not in row[0]
    (created,) = await events(pool, action="user.created", target_id=str(alice.id))
    assert created.actor == Actor.system() and created.request_id == "test"
    assert created.details == {"email": "Alice@Example.org", "role": "analyst"}


async def test_email_is_unique_ignoring_case(pool):
    await make(pool, "carol@example.org")
    with pytest.raises(DuplicateEmail, match="already exists"):
        await make(pool, "CAROL@example.org")
    assert len(await events(pool, action="user.created")) == 1


async def test_invalid_input_is_refused_before_any_write(pool):
    with pytest.raises(WeakPassword, match="at least 12"):
        await create_user(
            pool, email="d@example.org", password="short", role="admin", policy=FAST, context=SYSTEM
        )
    with pytest.raises(InvalidAccountData, match="role"):
        await make(pool, "d@example.org", "root")
    with pytest.raises(InvalidAccountData, match="email"):
        await make(pool, "not-an-email")
    with pytest.raises(WeakPassword, match="email"):
        await create_user(
            pool,
            email="long.address@example.org",
            password="Long.Address@example.org",
            role="viewer",
            policy=FAST,
            context=SYSTEM,
        )
    async with pool.connection() as conn:
        assert (await list_users(conn)).items == []


async def test_update_is_audited_and_idempotent(pool):
    await make(pool, "root@example.org")
    user = await make(pool, "e@example.org", Role.VIEWER)
    same = await update_user(pool, user.id, role="viewer", active=True, context=ADMIN_CTX)
    assert same == user
    changed = await update_user(
        pool, user.id, display_name="Eve", role=Role.ANALYST, context=ADMIN_CTX
    )
    assert (changed.display_name, changed.role) == ("Eve", Role.ANALYST)
    assert changed.updated_at > user.updated_at
    actions = [e.action for e in await events(pool, target_id=str(user.id))]
    assert actions == ["user.role_changed", "user.updated", "user.created"]
    (role_event,) = await events(pool, action="user.role_changed")
    assert role_event.details == {"role": ["viewer", "analyst"]}
    assert role_event.request_id == "req-1"
    with pytest.raises(UserNotFound):
        await update_user(pool, 999, active=False, context=ADMIN_CTX)


async def test_disabling_revokes_every_session(pool):
    await make(pool, "root@example.org")
    user = await make(pool, "f@example.org", Role.ANALYST)
    tokens = [
        (
            await login(
                pool, "f@example.org", PASSWORD, policy=FAST, client_addr=None, request_id=None
            )
        ).token
        for _ in range(2)
    ]
    assert (await authenticate(pool, tokens[0])).id == user.id
    await update_user(pool, user.id, active=False, context=ADMIN_CTX)
    for token in tokens:
        with pytest.raises(Unauthenticated):
            await authenticate(pool, token)
    (disabled,) = await events(pool, action="user.disabled")
    assert disabled.details == {"sessions_revoked": 2}
    # Enabled again: the old sessions stay revoked.
    await update_user(pool, user.id, active=True, context=ADMIN_CTX)
    with pytest.raises(Unauthenticated):
        await authenticate(pool, tokens[0])
    assert [e.action for e in await events(pool, action="user.enabled")] == ["user.enabled"]


async def test_set_password_revokes_sessions_and_checks_policy(pool):
    await make(pool, "g@example.org")
    user = await make(pool, "h@example.org", Role.VIEWER)
    old = await login(
        pool, "h@example.org", PASSWORD, policy=FAST, client_addr=None, request_id=None
    )
    with pytest.raises(WeakPassword):
        await set_password(pool, user.id, "tiny", policy=FAST, context=SYSTEM)
    assert (
        await set_password(pool, user.id, "a new long password", policy=FAST, context=SYSTEM) == 1
    )
    with pytest.raises(Unauthenticated):
        await authenticate(pool, old.token)
    await login(
        pool, "h@example.org", "a new long password", policy=FAST, client_addr=None, request_id=None
    )
    (changed,) = await events(pool, action="user.password_changed")
    assert changed.details == {"sessions_revoked": 1}


async def test_last_active_admin_cannot_be_demoted_disabled_or_deleted(pool):
    admin = await make(pool, "admin@example.org")
    viewer = await make(pool, "viewer@example.org", Role.VIEWER)
    for change in ({"role": Role.ANALYST}, {"active": False}):
        with pytest.raises(LastAdmin, match="last active admin"):
            await update_user(pool, admin.id, context=ADMIN_CTX, **change)
    with pytest.raises(LastAdmin):
        await delete_user(pool, admin.id, context=ADMIN_CTX)
    # A disabled admin does not count.
    other = await make(pool, "other@example.org")
    await update_user(pool, other.id, active=False, context=ADMIN_CTX)
    with pytest.raises(LastAdmin):
        await update_user(pool, admin.id, role=Role.VIEWER, context=ADMIN_CTX)
    # Non-admins are not concerned; and with a second active admin the first may go.
    await update_user(pool, viewer.id, active=False, context=ADMIN_CTX)
    await update_user(pool, other.id, active=True, context=ADMIN_CTX)
    await update_user(pool, admin.id, role=Role.VIEWER, context=ADMIN_CTX)
    await delete_user(pool, admin.id, context=ADMIN_CTX)
    async with pool.connection() as conn:
        assert [u.email for u in (await list_users(conn)).items] == [
            "viewer@example.org",
            "other@example.org",
        ]
    (deleted,) = await events(pool, action="user.deleted")
    assert deleted.target_id == str(admin.id) and deleted.details["email"] == "admin@example.org"


@pytest.mark.parametrize("change", [{"role": Role.VIEWER}, {"active": False}, None])
async def test_concurrent_removal_of_the_last_two_admins_lets_one_through(pool, change):
    for _round in range(5):
        async with pool.transaction() as conn:
            await conn.execute("DELETE FROM users")
        first = await make(pool, "one@example.org")
        second = await make(pool, "two@example.org")
        outcomes: list[str] = []
        start = trio.Event()

        async def remove(user_id: int, start: trio.Event, outcomes: list[str]) -> None:
            await start.wait()
            try:
                if change is None:
                    await delete_user(pool, user_id, context=ADMIN_CTX)
                else:
                    await update_user(pool, user_id, context=ADMIN_CTX, **change)
            except LastAdmin:
                outcomes.append("refused")
            else:
                outcomes.append("done")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(remove, first.id, start, outcomes)
            nursery.start_soon(remove, second.id, start, outcomes)
            await trio.sleep(0.01)
            start.set()
        assert sorted(outcomes) == ["done", "refused"]
        async with pool.connection() as conn:
            row = await (
                await conn.execute("SELECT count(*) FROM users WHERE role = 'admin' AND active")
            ).fetchone()
        assert row[0] == 1
