"""The bootstrap admin from TRIAGED_BOOTSTRAP_ADMIN_EMAIL / _PASSWORD."""

from __future__ import annotations

import logging

import pytest
import trio

from daemon.modules.audit import Actor, AuditFilter, list_events
from daemon.modules.auth import AuthPolicy, Role, bootstrap_admin, list_users, login
from daemon.shared.config import Settings
from daemon.shared.errors import InvalidAccountData, WeakPassword

SECRET = "bootstrap secret passphrase"


def settings(**overrides) -> Settings:
    values = {
        "bootstrap_admin_email": "root@example.org",
        "bootstrap_admin_password": SECRET,
        "auth_hash_time_cost": 1,
        "auth_hash_memory_kib": 8192,
        "auth_hash_parallelism": 1,
    }
    return Settings(**{**values, **overrides})


async def test_creates_the_admin_once_even_when_processes_race(pool, caplog):
    caplog.set_level(logging.INFO)
    results = []

    async def run():
        results.append(await bootstrap_admin(pool, settings()))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(run)
    created = [r for r in results if r is not None]
    assert len(created) == 1 and created[0].role is Role.ADMIN and created[0].active
    assert await bootstrap_admin(pool, settings()) is None
    async with pool.connection() as conn:
        assert await list_users(conn) == created
        (event,) = (await list_events(conn, filters=AuditFilter(action="user.created"))).events
    assert event.actor == Actor.system() and event.details["via"] == "bootstrap"
    policy = AuthPolicy.from_settings(settings())
    await login(pool, "root@example.org", SECRET, policy=policy, client_addr=None, request_id=None)
    assert "root@example.org" in caplog.text and SECRET not in caplog.text


async def test_nothing_happens_without_settings_or_with_users(pool):
    assert await bootstrap_admin(pool, Settings()) is None
    async with pool.connection() as conn:
        assert await list_users(conn) == []
    await bootstrap_admin(pool, settings(bootstrap_admin_email="first@example.org"))
    assert await bootstrap_admin(pool, settings(bootstrap_admin_email="second@example.org")) is None
    async with pool.connection() as conn:
        assert [u.email for u in await list_users(conn)] == ["first@example.org"]


async def test_bad_bootstrap_settings_are_clear_errors(pool):
    with pytest.raises(WeakPassword, match="at least 12"):
        await bootstrap_admin(pool, settings(bootstrap_admin_password="short"))
    with pytest.raises(InvalidAccountData, match="email"):
        await bootstrap_admin(pool, settings(bootstrap_admin_email="root"))
