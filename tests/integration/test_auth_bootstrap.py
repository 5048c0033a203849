"""The bootstrap admin from TRIAGED_BOOTSTRAP_ADMIN_EMAIL / _PASSWORD."""

from __future__ import annotations

import logging

import pytest
import trio

from daemon.composition import auth_policy
from daemon.modules.audit import Actor, AuditContext, AuditFilter, list_events
from daemon.modules.auth import (
    INITIAL_ADMIN_EMAIL,
    InvalidAccountData,
    InvalidCredentials,
    Pruned,
    Role,
    WeakPassword,
    bootstrap_admin,
    create_user,
    initial_admin,
    list_users,
    login,
    prune,
)
from daemon.shared.config import Settings

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


async def _bootstrap(pool, config: Settings):
    """The supervisor's call, with what these settings configure."""
    password = config.bootstrap_admin_password
    return await bootstrap_admin(
        pool,
        config.bootstrap_admin_email,
        None if password is None else password.get_secret_value(),
        auth_policy(config),
    )


async def _initial(pool, config: Settings):
    return await initial_admin(pool, config.initial_admin_password_file, auth_policy(config))


async def test_creates_the_admin_once_even_when_processes_race(pool, caplog):
    caplog.set_level(logging.INFO)
    results = []

    async def run():
        results.append(await _bootstrap(pool, settings()))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(run)
    created = [r for r in results if r is not None]
    assert len(created) == 1 and created[0].role is Role.ADMIN and created[0].active
    assert await _bootstrap(pool, settings()) is None
    async with pool.connection() as conn:
        assert (await list_users(conn)).items == created
        (event,) = (await list_events(conn, filters=AuditFilter(action="user.created"))).items
    assert event.actor == Actor.system() and event.details["via"] == "bootstrap"
    policy = auth_policy(settings())
    await login(pool, "root@example.org", SECRET, policy=policy, client_addr=None, request_id=None)
    assert "root@example.org" in caplog.text and SECRET not in caplog.text


async def test_nothing_happens_without_settings_or_with_users(pool):
    assert await _bootstrap(pool, Settings()) is None
    async with pool.connection() as conn:
        assert (await list_users(conn)).items == []
    await _bootstrap(pool, settings(bootstrap_admin_email="first@example.org"))
    assert await _bootstrap(pool, settings(bootstrap_admin_email="second@example.org")) is None
    async with pool.connection() as conn:
        assert [u.email for u in (await list_users(conn)).items] == ["first@example.org"]


async def test_bad_bootstrap_settings_are_clear_errors(pool):
    with pytest.raises(WeakPassword, match="at least 12"):
        await _bootstrap(pool, settings(bootstrap_admin_password="short"))
    with pytest.raises(InvalidAccountData, match="email"):
        await _bootstrap(pool, settings(bootstrap_admin_email="root"))


async def test_initial_admin_password_file(pool, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = tmp_path / "state" / "initial-admin-password"
    config = settings(
        bootstrap_admin_email=None, bootstrap_admin_password=None, initial_admin_password_file=path
    )
    results = []

    async def run():
        results.append(await _initial(pool, config))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(run)
    created = [r for r in results if r is not None]
    assert len(created) == 1 and created[0].email == INITIAL_ADMIN_EMAIL
    assert (path.stat().st_mode & 0o777) == 0o600
    password = path.read_text().strip()
    assert len(password) >= 18
    policy = auth_policy(config)
    result = await login(
        pool, INITIAL_ADMIN_EMAIL, password, policy=policy, client_addr=None, request_id=None
    )
    assert result.user.role is Role.ADMIN
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert str(path) in logged and password not in logged
    assert list(path.parent.iterdir()) == [path], "no temporary file left behind"
    # Later starts find a user and leave everything alone.
    assert await _initial(pool, config) is None
    assert path.read_text().strip() == password


async def test_without_users_or_file_the_log_says_how(pool, caplog):
    config = settings(bootstrap_admin_email=None, bootstrap_admin_password=None)
    assert await _initial(pool, config) is None
    message = [r.getMessage() for r in caplog.records if "no user yet" in r.getMessage()]
    assert message and "triaged user create" in message[0]


async def test_prune_expired_sessions_and_idle_throttle_rows(pool):
    config = settings(bootstrap_admin_email=None, bootstrap_admin_password=None)
    policy = auth_policy(config)
    user = await create_user(
        pool,
        email="p@example.org",
        password=SECRET,
        role=Role.VIEWER,
        policy=policy,
        context=AuditContext.system(),
    )
    for _ in range(3):
        await login(
            pool, user.email, SECRET, policy=policy, client_addr="192.0.2.1", request_id=None
        )
    for address in ("192.0.2.2", "192.0.2.3"):
        with pytest.raises(InvalidCredentials):
            await login(
                pool, user.email, "wrong!", policy=policy, client_addr=address, request_id=None
            )
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE sessions SET expires_at = now() - interval '8 days' "
            "WHERE id = (SELECT min(id) FROM sessions)"
        )
        await conn.execute(
            "UPDATE sessions SET expires_at = now() - interval '6 days' "
            "WHERE id = (SELECT max(id) FROM sessions)"
        )
        await conn.execute(
            "UPDATE login_throttle SET last_failure_at = now() - interval '1 day' "
            "WHERE key = '192.0.2.2'"
        )
    assert await prune(pool, policy) == Pruned(sessions=1, throttle_rows=1)
    async with pool.connection() as conn:
        sessions = (await (await conn.execute("SELECT count(*) FROM sessions")).fetchone())[0]
        keys = {
            r[0] for r in await (await conn.execute("SELECT key FROM login_throttle")).fetchall()
        }
    assert sessions == 2
    assert keys == {"p@example.org", "192.0.2.3"}
    assert await prune(pool, policy) == Pruned(sessions=0, throttle_rows=0)
