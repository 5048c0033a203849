"""``/api/v1/auth`` over real HTTP: login, me, logout, password change, throttling,
and secrets kept out of the database and the logs."""

from __future__ import annotations

import logging

import trio

from daemon.modules.audit import AuditFilter, list_events
from daemon.modules.auth import Role
from tests.integration.api_server import PASSWORD, bearer, serve_api


async def events(pool, **filters):
    async with pool.connection() as conn:
        page = await list_events(conn, filters=AuditFilter(**filters), limit=500)
    return page.items


async def test_login_me_logout(api):
    user = await api.user(Role.VIEWER, email="Vera@Example.org")
    async with api.client() as client:
        response = await client.post(
            "/api/v1/auth/login", json={"email": "vera@example.org", "password": PASSWORD}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["token"].startswith("tgs_") and body["token_type"] == "Bearer"
        assert body["user"]["id"] == user.id and body["user"]["role"] == "viewer"
        assert body["expires_at"].endswith("Z")
        assert response.headers["cache-control"] == "no-store"
        token = body["token"]

        me = await client.get("/api/v1/auth/me", headers=bearer(token))
        assert me.status_code == 200
        assert me.json()["kind"] == "user" and me.json()["user"]["email"] == "Vera@Example.org"
        assert me.headers["cache-control"] == "no-store"

        assert (await client.post("/api/v1/auth/logout", headers=bearer(token))).status_code == 204
        after = await client.get("/api/v1/auth/me", headers=bearer(token))
        assert after.status_code == 401
        assert after.headers["www-authenticate"] == 'Bearer realm="triaged", error="invalid_token"'
        assert after.headers["content-type"] == "application/problem+json"
    logins = await events(api.pool, action="auth.login", target_type="session")
    assert len(logins) == 1 and logins[0].client_addr == "127.0.0.1"
    assert [e.action for e in await events(api.pool, action="auth.logout")] == ["auth.logout"]


async def test_missing_credentials_get_a_challenge_without_error_code(api):
    async with api.client() as client:
        response = await client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="triaged"'
    assert "Bearer" in response.json()["detail"]


async def test_failed_logins_look_the_same(api):
    await api.user(email="known@example.org")
    disabled = await api.user(email="off@example.org")
    async with api.pool.transaction() as conn:
        await conn.execute("UPDATE users SET active = false WHERE id = %s", (disabled.id,))
    headers = {"X-Request-ID": "same-request-id"}
    async with api.client() as client:
        answers = [
            await client.post("/api/v1/auth/login", json=body, headers=headers)
            for body in (
                {"email": "nobody@example.org", "password": PASSWORD},
                {"email": "known@example.org", "password": "wrong password!!"},
                {"email": "off@example.org", "password": PASSWORD},
            )
        ]
    assert {a.status_code for a in answers} == {401}
    assert len({a.content for a in answers}) == 1, [a.content for a in answers]
    assert answers[0].json()["detail"] == "Invalid email or password."


async def test_bad_login_bodies_are_4xx(api):
    async with api.client() as client:
        wrong_type = await client.post("/api/v1/auth/login", json={"email": 1, "password": []})
        not_json = await client.post(
            "/api/v1/auth/login", content=b"{", headers={"Content-Type": "application/json"}
        )
        form = await client.post("/api/v1/auth/login", data={"email": "a", "password": "b"})
        extra = await client.post(
            "/api/v1/auth/login", json={"email": "a@b.c", "password": "x", "admin": True}
        )
    assert wrong_type.status_code == 422
    assert {e["field"] for e in wrong_type.json()["errors"]} == {"email", "password"}
    assert not_json.status_code == 400
    assert form.status_code == 415
    assert extra.status_code == 422


async def test_lockout_after_repeated_failures(pool):
    async with serve_api(
        pool, auth_account_free_failures=5, auth_account_lock_failures=5, auth_lock_seconds=2
    ) as api:
        await api.user(email="target@example.org")
        wrong = {"email": "target@example.org", "password": "not the password"}
        right = {"email": "target@example.org", "password": PASSWORD}
        async with api.client() as client:
            answers = [await client.post("/api/v1/auth/login", json=wrong) for _ in range(20)]
            assert [a.status_code for a in answers] == [401] * 5 + [429] * 15
            assert {a.headers["retry-after"] for a in answers[5:]} <= {"1", "2"}
            assert answers[-1].json()["detail"].startswith("too many failed logins")
            locked = await client.post("/api/v1/auth/login", json=right)
            assert locked.status_code == 429, "the right password must wait for the lock"
            await trio.sleep(int(locked.headers["retry-after"]) + 0.2)
            unlocked = await client.post("/api/v1/auth/login", json=right)
            assert unlocked.status_code == 200
        failed = await events(pool, action="auth.login_failed")
        assert len(failed) == 5
        assert failed[0].details == {
            "email": "target@example.org",
            "reason": "wrong_password",
            "failures": 5,
            "blocked_seconds": 2,
        }
        # 16 refusals within a minute: audited once (the log must not be floodable).
        assert len(await events(pool, action="auth.login_throttled")) == 1
        assert len(await events(pool, action="auth.login")) == 1


async def test_change_own_password(api):
    user = await api.user(Role.VIEWER)
    current, other = await api.session(user), await api.session(user)
    async with api.client() as client:
        wrong = await client.post(
            "/api/v1/auth/password",
            headers=bearer(current),
            json={"current_password": "not it", "new_password": "a brand new password"},
        )
        assert wrong.status_code == 422
        assert wrong.json()["errors"] == [
            {"field": "current_password", "message": "current_password: wrong password"}
        ]
        weak = await client.post(
            "/api/v1/auth/password",
            headers=bearer(current),
            json={"current_password": PASSWORD, "new_password": "short"},
        )
        assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "new_password"
        changed = await client.post(
            "/api/v1/auth/password",
            headers=bearer(current),
            json={"current_password": PASSWORD, "new_password": "a brand new password"},
        )
        assert changed.status_code == 200 and changed.json() == {"revoked_sessions": 1}
        assert (await client.get("/api/v1/auth/me", headers=bearer(current))).status_code == 200
        assert (await client.get("/api/v1/auth/me", headers=bearer(other))).status_code == 401
        relogin = await client.post(
            "/api/v1/auth/login",
            json={"email": user.email, "password": "a brand new password"},
        )
        assert relogin.status_code == 200


async def test_secrets_are_nowhere_in_clear(api, caplog):
    caplog.set_level(logging.DEBUG)
    admin_token = await api.token(Role.ADMIN)
    secrets = [admin_token, PASSWORD]
    async with api.client() as client:
        login = await client.post(
            "/api/v1/auth/login",
            json={"email": (await api.user()).email, "password": PASSWORD},
        )
        secrets.append(login.json()["token"])
        created = await client.post(
            "/api/v1/api-keys", headers=bearer(admin_token), json={"name": "ci", "role": "viewer"}
        )
        key = created.json()["key"]
        secrets.append(key)
        await client.get("/api/v1/auth/me", headers=bearer(key))
        new_user_password = "another long password"
        secrets.append(new_user_password)
        await client.post(
            "/api/v1/users",
            headers=bearer(admin_token),
            json={"email": "n@example.org", "password": new_user_password, "role": "viewer"},
        )
        await client.get("/api/v1/auth/me", headers=bearer("tgs_" + "x" * 43))
    async with api.pool.connection() as conn:
        tables = [
            row[0]
            for row in await (
                await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).fetchall()
        ]
        dump = []
        for table in tables:
            rows = await (await conn.execute(f'SELECT t::text FROM "{table}" t')).fetchall()
            dump += [row[0] for row in rows]
    text = "\n".join(dump)
    logs = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert len(logs) > 0 and "sessions" in tables and "api_keys" in tables
    for secret in secrets:
        assert secret not in text
        assert secret not in logs
