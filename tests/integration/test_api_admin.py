"""User, API key and audit administration over real HTTP (admins only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.modules.auth import Role
from tests.client_warnings import ABANDONED_REQUEST_BODY
from tests.integration.api_server import PASSWORD, bearer


async def test_user_lifecycle(api):
    admin = await api.user(Role.ADMIN, email="root@example.org")
    headers = bearer(await api.session(admin))
    async with api.client(headers=headers) as client:
        created = await client.post(
            "/api/v1/users",
            json={
                "email": "Ana@Example.org",
                "password": PASSWORD,
                "role": "analyst",
                "display_name": "Ana",
            },
        )
        assert created.status_code == 201
        user = created.json()
        assert created.headers["location"] == f"/api/v1/users/{user['id']}"
        assert (user["email"], user["role"], user["active"]) == ("Ana@Example.org", "analyst", True)
        assert PASSWORD not in created.text and "hash" not in created.text

        duplicate = await client.post(
            "/api/v1/users",
            json={"email": "ana@example.ORG", "password": PASSWORD, "role": "viewer"},
        )
        assert duplicate.status_code == 409
        weak = await client.post(
            "/api/v1/users", json={"email": "b@example.org", "password": "short", "role": "viewer"}
        )
        assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "password"
        bad_role = await client.post(
            "/api/v1/users", json={"email": "c@example.org", "password": PASSWORD, "role": "god"}
        )
        assert bad_role.status_code == 422 and bad_role.json()["errors"][0]["field"] == "role"
        bad_email = await client.post(
            "/api/v1/users", json={"email": "not-an-email", "password": PASSWORD, "role": "viewer"}
        )
        assert bad_email.status_code == 422 and bad_email.json()["errors"][0]["field"] == "email"

        shown = await client.get(f"/api/v1/users/{user['id']}")
        assert shown.status_code == 200 and shown.json() == user
        assert (await client.get("/api/v1/users/999999")).status_code == 404

        their_session = await api.session(await _as_user(api, user))
        promoted = await client.patch(
            f"/api/v1/users/{user['id']}", json={"role": "admin", "display_name": "Ana B."}
        )
        assert promoted.status_code == 200
        assert (promoted.json()["role"], promoted.json()["display_name"]) == ("admin", "Ana B.")
        empty = await client.patch(f"/api/v1/users/{user['id']}", json={})
        assert empty.status_code == 422

        disabled = await client.patch(f"/api/v1/users/{user['id']}", json={"active": False})
        assert disabled.status_code == 200 and disabled.json()["active"] is False
        me = await client.get("/api/v1/auth/me", headers=bearer(their_session))
        assert me.status_code == 401, "disabling revokes the user's sessions"
        assert (await client.delete(f"/api/v1/users/{user['id']}")).status_code == 204
        assert (await client.get(f"/api/v1/users/{user['id']}")).status_code == 404
        assert (await client.delete(f"/api/v1/users/{user['id']}")).status_code == 404


async def _as_user(api, view):
    from daemon.modules.auth import get_user

    async with api.pool.connection() as conn:
        return await get_user(conn, view["id"])


async def test_the_last_admin_stays(api):
    admin = await api.user(Role.ADMIN)
    headers = bearer(await api.session(admin))
    async with api.client(headers=headers) as client:
        demote = await client.patch(f"/api/v1/users/{admin.id}", json={"role": "viewer"})
        disable = await client.patch(f"/api/v1/users/{admin.id}", json={"active": False})
        delete = await client.delete(f"/api/v1/users/{admin.id}")
        assert [demote.status_code, disable.status_code, delete.status_code] == [409, 409, 409]
        assert "admin" in delete.json()["detail"]
        # All or nothing: a rename in the same request as a refused demotion is not kept.
        mixed = await client.patch(
            f"/api/v1/users/{admin.id}", json={"display_name": "X", "role": "viewer"}
        )
        assert mixed.status_code == 409
        assert (await client.get(f"/api/v1/users/{admin.id}")).json()["display_name"] == ""


async def test_admin_password_reset_revokes_sessions(api):
    admin_headers = bearer(await api.token(Role.ADMIN))
    user = await api.user(Role.VIEWER)
    session = await api.session(user)
    async with api.client() as client:
        reset = await client.patch(
            f"/api/v1/users/{user.id}",
            headers=admin_headers,
            json={"password": "a reset password here"},
        )
        assert reset.status_code == 200
        assert reset.json()["password_changed_at"] > user.password_changed_at.isoformat()[:19]
        assert (await client.get("/api/v1/auth/me", headers=bearer(session))).status_code == 401
        login = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": "a reset password here"}
        )
        assert login.status_code == 200


async def test_user_listing_pages_and_filters(api):
    admin_headers = bearer(await api.token(Role.ADMIN))
    for _ in range(5):
        await api.user(Role.VIEWER)
    async with api.client(headers=admin_headers) as client:
        seen, cursor = [], None
        for _ in range(20):  # a cursor that never ends fails instead of looping forever
            params = {"limit": 2, "role": "viewer"} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/api/v1/users", params=params)).json()
            seen += [u["id"] for u in page["items"]]
            assert all(u["role"] == "viewer" for u in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        else:
            raise AssertionError(f"pagination did not end after 20 pages: {seen}")
        assert len(seen) == 5 and seen == sorted(seen)
        bad = await client.get("/api/v1/users", params={"limit": 0, "colour": "red"})
        assert bad.status_code == 422
        assert {e["field"] for e in bad.json()["errors"]} == {"limit", "colour"}
        twice = await client.get("/api/v1/users?role=viewer&role=admin")
        assert twice.status_code == 422


async def test_api_keys(api):
    admin = await api.user(Role.ADMIN)
    admin_headers = bearer(await api.session(admin))
    async with api.client() as client:
        created = await client.post(
            "/api/v1/api-keys",
            headers=admin_headers,
            json={
                "name": "nightly export",
                "role": "viewer",
                "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            },
        )
        assert created.status_code == 201
        key = created.json()
        secret = key.pop("key")
        assert secret.startswith(f"tgd_{key['prefix']}_")
        assert key["created_by"] == admin.id and key["role"] == "viewer"

        me = await client.get("/api/v1/auth/me", headers=bearer(secret))
        assert me.status_code == 200
        assert (me.json()["kind"], me.json()["name"]) == ("api_key", "nightly export")
        assert "user" not in me.json()

        listed = await client.get("/api/v1/api-keys", headers=admin_headers)
        assert [k["id"] for k in listed.json()["items"]] == [key["id"]]
        assert secret not in listed.text
        shown = await client.get(f"/api/v1/api-keys/{key['id']}", headers=admin_headers)
        assert shown.json()["last_used_at"] is not None

        past = await client.post(
            "/api/v1/api-keys",
            headers=admin_headers,
            json={"name": "x", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"},
        )
        naive = await client.post(
            "/api/v1/api-keys",
            headers=admin_headers,
            json={"name": "x", "role": "viewer", "expires_at": "2031-01-01T00:00:00"},
        )
        assert (past.status_code, naive.status_code) == (422, 422)

        revoked = await client.delete(f"/api/v1/api-keys/{key['id']}", headers=admin_headers)
        assert revoked.status_code == 204
        assert (await client.get("/api/v1/auth/me", headers=bearer(secret))).status_code == 401
        again = await client.delete(f"/api/v1/api-keys/{key['id']}", headers=admin_headers)
        assert again.status_code == 204
        assert (await client.get("/api/v1/api-keys", headers=admin_headers)).json()["items"] == []
        with_revoked = await client.get(
            "/api/v1/api-keys", params={"include_revoked": "true"}, headers=admin_headers
        )
        assert with_revoked.json()["items"][0]["revoked_at"] is not None
        missing = await client.delete("/api/v1/api-keys/424242", headers=admin_headers)
        assert missing.status_code == 404


async def test_audit_listing(api):
    admin = await api.user(Role.ADMIN)
    admin_headers = bearer(await api.session(admin))
    async with api.client(headers=admin_headers) as client:
        for i in range(3):
            await client.post(
                "/api/v1/users",
                headers={"X-Request-ID": f"create-{i}"},
                json={"email": f"u{i}@example.org", "password": PASSWORD, "role": "viewer"},
            )
        first = await client.get(
            "/api/v1/audit", params={"action": "user.created", "actor_type": "user", "limit": 2}
        )
        assert first.status_code == 200
        page = first.json()
        assert [e["request_id"] for e in page["items"]] == ["create-2", "create-1"]
        event = page["items"][0]
        assert event["actor"] == {"type": "user", "id": admin.id}
        assert event["target"]["type"] == "user" and event["client_addr"] == "127.0.0.1"
        rest = await client.get(
            "/api/v1/audit",
            params={"action": "user.created", "actor_type": "user", "cursor": page["next_cursor"]},
        )
        assert [e["request_id"] for e in rest.json()["items"]] == ["create-0"]
        assert rest.json()["next_cursor"] is None

        prefix = await client.get("/api/v1/audit", params={"action_prefix": "auth."})
        assert {e["action"] for e in prefix.json()["items"]} == {"auth.login"}
        future = await client.get("/api/v1/audit", params={"since": "2999-01-01T00:00:00Z"})
        assert future.json()["items"] == []
        bad = await client.get(
            "/api/v1/audit", params={"since": "yesterday", "cursor": "x", "actor_type": "robot"}
        )
        assert bad.status_code == 422
        bad_cursor = await client.get("/api/v1/audit", params={"cursor": "abc"})
        assert bad_cursor.status_code == 422


@ABANDONED_REQUEST_BODY
async def test_values_the_database_cannot_store_are_4xx_not_500(api):
    admin_headers = bearer(await api.token(Role.ADMIN))
    async with api.client() as client:
        nul_login = await client.post(
            "/api/v1/auth/login", json={"email": "a\u0000@example.org", "password": "x"}
        )
        assert nul_login.status_code == 422 and nul_login.json()["errors"][0]["field"] == "email"
        big_login = await client.post(
            "/api/v1/auth/login",
            content=b'{"email": "' + b"a" * (2 * 1024 * 1024) + b'", "password": "x"}',
            headers={"Content-Type": "application/json"},
        )
        assert big_login.status_code == 413
        for path, params in (
            ("/api/v1/users", {"cursor": str(2**64)}),
            ("/api/v1/audit", {"actor_id": str(2**64)}),
            ("/api/v1/audit", {"action": "x\u0000y"}),
            ("/api/v1/documents", {"cursor": "9" * 19}),
        ):
            response = await client.get(path, params=params, headers=admin_headers)
            assert response.status_code == 422, (path, params, response.text)
        assert (await client.get(f"/api/v1/users/{2**64}", headers=admin_headers)).status_code in (
            404,
            422,
        )
        far_future = await client.post(
            "/api/v1/api-keys",
            headers=admin_headers,
            json={"name": "k", "role": "viewer", "expires_at": "9999-12-31T23:59:59-14:00"},
        )
        assert far_future.status_code == 422
        nul_name = await client.post(
            "/api/v1/api-keys", headers=admin_headers, json={"name": "a\u0000", "role": "viewer"}
        )
        assert nul_name.status_code == 422
        page = await client.get("/api/v1/users", params={"limit": 500}, headers=admin_headers)
        assert page.status_code == 200
