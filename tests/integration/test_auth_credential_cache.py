"""The per-process cache of token lookups (issue 16): a token is looked up once and then
answered from memory, yet every revocation applies to the very next request, in the
process that made it and in another one sharing the database (here: a second server on
its own pool, so its own cache and its own listener), whichever way it was made (the
API, another tool's plain SQL), and when the listener is lost."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import trio

from daemon.modules.auth import Role
from daemon.modules.auth.credential_cache import DEFAULT_VERIFY_SECONDS
from daemon.shared.db import open_pool
from tests.integration.api_server import bearer, serve_api

READ = "/api/v1/documents?limit=5"
ADMIN_READ = "/api/v1/users"


@asynccontextmanager
async def other_process(database_url):
    """A second API server on its own pool: what another process sees."""
    async with open_pool(database_url, max_size=4) as pool, serve_api(pool) as server:
        yield server


def cache_of(server):
    return server.app.extensions["triaged"].credentials


async def status(server, token, path=READ):
    async with server.client(check_contract=False) as client:
        return (await client.get(path, headers=bearer(token))).status_code


async def cached(server, token, path=READ) -> None:
    """Use ``token`` on ``server`` until its lookup is cached; the test fails if it never
    is (the cache would not be tested)."""
    for _ in range(3):
        assert await status(server, token, path) == 200
    assert len(cache_of(server)) >= 1


async def test_a_revoked_key_is_refused_at_once_here_and_in_another_process(api, database_url):
    admin = bearer(await api.token(Role.ADMIN))
    async with api.client() as client:
        created = (
            await client.post(
                "/api/v1/api-keys", json={"name": "k", "role": "viewer"}, headers=admin
            )
        ).json()
    key = created["key"]
    async with other_process(database_url) as other:
        await cached(api, key)
        await cached(other, key)
        hits = cache_of(other).hits
        assert await status(other, key) == 200
        assert cache_of(other).hits == hits + 1  # answered from the cache
        async with api.client() as client:
            revoked = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin)
        assert revoked.status_code == 204
        assert await status(other, key) == 401
        assert await status(api, key) == 401


async def test_disabled_demoted_or_reset_users_lose_their_sessions_at_once(api, database_url):
    admin = bearer(await api.token(Role.ADMIN))
    viewer, boss, reset = (
        await api.user(Role.VIEWER),
        await api.user(Role.ADMIN),
        await api.user(Role.ANALYST),
    )
    tokens = {u.id: await api.session(u) for u in (viewer, boss, reset)}
    async with other_process(database_url) as other:
        await cached(other, tokens[viewer.id])
        await cached(other, tokens[boss.id], ADMIN_READ)
        await cached(other, tokens[reset.id])
        changes = [
            (viewer, {"active": False}, READ, 401),
            (boss, {"role": "viewer"}, ADMIN_READ, 403),
            (reset, {"password": "another long passphrase 42"}, READ, 401),
        ]
        for user, change, path, refused in changes:
            async with api.client() as client:
                response = await client.patch(
                    f"/api/v1/users/{user.id}", json=change, headers=admin
                )
            assert response.status_code == 200, response.text
            assert await status(other, tokens[user.id], path) == refused, change
            assert await status(api, tokens[user.id], path) == refused, change


async def test_a_logout_ends_the_session_in_every_process(api, database_url):
    token = await api.token(Role.VIEWER)
    async with other_process(database_url) as other:
        await cached(other, token)
        await cached(api, token)
        async with api.client() as client:
            assert (
                await client.post("/api/v1/auth/logout", headers=bearer(token))
            ).status_code == 204
        assert await status(api, token) == 401
        assert await status(other, token) == 401


async def test_a_revocation_by_another_tool_in_plain_sql_applies_at_once(api, database_url):
    key = await api.api_key(Role.VIEWER)
    await cached(api, key)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE api_keys SET revoked_at = now()")
    assert await status(api, key) == 401


async def test_without_its_listener_the_cache_is_not_used(api, database_url):
    key = await api.api_key(Role.VIEWER)
    await cached(api, key)
    with psycopg.connect(database_url, autocommit=True) as conn:
        # The listener dies, and a revocation that notifies nobody follows: only the
        # dropped cache can refuse the key now.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE %s",
            ("SELECT pg_notify(%",),
        )
        conn.execute("ALTER TABLE api_keys DISABLE TRIGGER api_keys_auth_changed")
        conn.execute("UPDATE api_keys SET revoked_at = now()")
    await trio.sleep(0.2)  # the termination reaches the listener's socket
    assert await status(api, key) == 401


async def test_an_entry_dies_with_its_credential(api):
    expires = datetime.now(UTC) + timedelta(seconds=2)
    key = await api.api_key(Role.VIEWER, expires_at=expires)
    await cached(api, key)
    await trio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)
    assert await status(api, key) == 401


async def test_another_process_checking_its_listener_leaves_this_cache_alone(api, database_url):
    # Each process proves its listener on a channel of its own: on the shared one, every
    # check would empty every other process's cache.
    key = await api.api_key(Role.VIEWER)
    async with other_process(database_url) as other:
        await cached(api, key)
        await cached(other, key)
        await trio.sleep(DEFAULT_VERIFY_SECONDS + 0.2)
        assert await status(other, key) == 200  # its listener is checked again
        hits = cache_of(api).hits
        assert await status(api, key) == 200
        assert cache_of(api).hits == hits + 1


async def test_an_anonymous_request_cannot_empty_the_cache(api):
    key = await api.api_key(Role.VIEWER)
    await cached(api, key)
    async with api.client(check_contract=False) as client:
        login = {"email": "nobody@example.org", "password": "not the password at all"}
        assert (await client.post("/api/v1/auth/login", json=login)).status_code == 401
        assert (await client.delete("/api/v1/api-keys/1")).status_code == 401
    hits = cache_of(api).hits
    assert await status(api, key) == 200
    assert cache_of(api).hits == hits + 1
