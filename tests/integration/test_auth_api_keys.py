"""API keys: shown once, stored hashed, recognisable, expiring, revocable, audited."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from daemon.modules.audit import Actor, ActorType, AuditContext, AuditFilter, list_events
from daemon.modules.auth import (
    ApiKeyNotFound,
    InvalidAccountData,
    PrincipalKind,
    Role,
    Unauthenticated,
    authenticate,
    create_api_key,
    get_api_key,
    list_api_keys,
    revoke_api_key,
)

ADMIN = AuditContext(actor=Actor(type=ActorType.USER, id=None), request_id="r")


async def test_create_authenticate_list_revoke(pool):
    created = await create_api_key(pool, name=" ingest ", role=Role.ANALYST, context=ADMIN)
    key = created.key
    assert created.secret.startswith(f"tgd_{key.prefix}_") and key.hint == f"tgd_{key.prefix}_…"
    assert (key.name, key.role, key.expires_at, key.last_used_at, key.revoked_at) == (
        "ingest", Role.ANALYST, None, None, None,
    )  # fmt: skip
    principal = await authenticate(pool, created.secret)
    assert (principal.kind, principal.id, principal.role, principal.name) == (
        PrincipalKind.API_KEY, key.id, Role.ANALYST, "ingest",
    )  # fmt: skip
    assert principal.actor == Actor(type=ActorType.API_KEY, id=key.id)
    async with pool.connection() as conn:
        used = await get_api_key(conn, key.id)
        stored = await (await conn.execute("SELECT secret_hash FROM api_keys")).fetchone()
        assert await list_api_keys(conn) == [used]
    assert used.last_used_at is not None
    assert stored[0] == hashlib.sha256(created.secret.encode()).digest()

    revoked = await revoke_api_key(pool, key.id, context=ADMIN)
    assert revoked.revoked_at is not None
    assert await revoke_api_key(pool, key.id, context=ADMIN) == revoked  # idempotent
    with pytest.raises(Unauthenticated):
        await authenticate(pool, created.secret)
    async with pool.connection() as conn:
        assert await list_api_keys(conn) == []
        assert [k.id for k in await list_api_keys(conn, include_revoked=True)] == [key.id]
        with pytest.raises(ApiKeyNotFound):
            await get_api_key(conn, 999)
        page = await list_events(conn, filters=AuditFilter(action_prefix="api_key."))
    with pytest.raises(ApiKeyNotFound):
        await revoke_api_key(pool, 999, context=ADMIN)
    assert [(e.action, e.details) for e in page.items] == [
        ("api_key.revoked", {"name": "ingest", "prefix": key.prefix}),
        ("api_key.created", {"name": "ingest", "prefix": key.prefix, "role": "analyst"}),
    ]


async def test_expiry(pool):
    soon = datetime.now(UTC) + timedelta(hours=1)
    created = await create_api_key(
        pool, name="nightly", role="viewer", expires_at=soon, context=ADMIN
    )
    assert created.key.expires_at == soon
    await authenticate(pool, created.secret)
    async with pool.transaction() as conn:
        await conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 second'")
    with pytest.raises(Unauthenticated):
        await authenticate(pool, created.secret)


async def test_a_modified_key_is_refused(pool):
    created = await create_api_key(pool, name="k", role="viewer", context=ADMIN)
    tampered = created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B")
    with pytest.raises(Unauthenticated):
        await authenticate(pool, tampered)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "  "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"role": "root"}, "role"),
        ({"expires_at": datetime(2030, 1, 1)}, "expires_at"),
        ({"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}, "expires_at"),
    ],
)
async def test_invalid_keys_are_refused(pool, kwargs, field):
    with pytest.raises(InvalidAccountData) as caught:
        await create_api_key(pool, **{"name": "k", "role": "viewer", **kwargs}, context=ADMIN)
    assert caught.value.field == field


async def test_creator_is_recorded(pool):
    from daemon.modules.auth import AuthPolicy, create_user

    admin = await create_user(
        pool,
        email="boss@example.org",
        password="correct horse battery",
        role="admin",
        policy=AuthPolicy(hash_time_cost=1, hash_memory_kib=8192, hash_parallelism=1),
        context=AuditContext.system(),
    )
    context = AuditContext(actor=Actor(type=ActorType.USER, id=admin.id))
    created = await create_api_key(pool, name="k", role="admin", context=context)
    assert created.key.created_by == admin.id
