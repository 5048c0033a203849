"""The authorization matrix, generated from the app's own route table.

Every route x every kind of caller answers exactly as the route's declaration says:
public routes answer anyone; the others answer 401 (with ``WWW-Authenticate``) to no,
malformed, expired or revoked credentials and to a disabled user's session, 403 to a
role that is too low (or an API key on a users-only route), and something else
(the route's own answer) to a role that is high enough. A route added without a
declaration fails here: ``create_app`` refuses it and ``check_declarations`` names it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from quart import Blueprint

from daemon.api import ApiContext, UndeclaredRoutes, create_app
from daemon.api.access import access_of, check_declarations, requires
from daemon.modules.auth import Role, logout, revoke_api_key
from daemon.shared.config import Settings
from daemon.shared.health import HealthState
from tests.integration.api_server import SYSTEM, bearer, serve_api

MISSING_ID = "987654321"


def route_table(app):
    """(method, concrete path, access) for every route of the app."""
    table = []
    for rule in app.url_map.iter_rules():
        access = access_of(app.view_functions[rule.endpoint])
        assert access is not None, f"{rule.rule} has no access declaration"
        path = re.sub(r"<(?:\w+:)?\w+>", MISSING_ID, rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            table.append((method, path, access))
    return table


async def call(client, method, path, headers):
    kwargs = {"json": {}} if method in ("POST", "PATCH", "PUT") else {}
    return await client.request(method, path, headers=headers, **kwargs)


async def bad_credentials(server):
    """Header sets that must all be refused with 401 on every protected route."""
    pool = server.pool
    expired_user = await server.user()
    expired = await server.session(expired_user)
    revoked = await server.token()
    await logout(pool, revoked, context=SYSTEM)
    disabled_user = await server.user(Role.ADMIN)
    disabled = await server.session(disabled_user)
    expired_key = await server.api_key(
        Role.ADMIN, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    revoked_key = await server.api_key(Role.ADMIN)
    async with pool.transaction() as conn:
        await conn.execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = %s",
            (expired_user.id,),
        )
        # Disabled behind the module's back, so its sessions stay unrevoked: what is
        # tested is that authentication itself checks the active flag.
        await conn.execute("UPDATE users SET active = false WHERE id = %s", (disabled_user.id,))
        await conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = "
            "(SELECT max(id) FROM api_keys WHERE expires_at IS NOT NULL)"
        )
        key_id = (await (await conn.execute("SELECT max(id) FROM api_keys")).fetchone())[0]
    await revoke_api_key(pool, key_id, context=SYSTEM)
    return {
        "none": {},
        "empty bearer": {"Authorization": "Bearer"},
        "basic scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
        "malformed token": bearer("not-a-token"),
        "unknown session token": bearer("tgs_" + "A" * 43),
        "unknown api key": bearer("tgd_0123abcd_" + "B" * 43),
        "over-long token": bearer("tgs_" + "C" * 500),
        "expired session": bearer(expired),
        "revoked session": bearer(revoked),
        "disabled user": bearer(disabled),
        "expired api key": bearer(expired_key),
        "revoked api key": bearer(revoked_key),
    }


@pytest.mark.parametrize("metrics_public", [True, False])
async def test_every_route_answers_as_declared(pool, metrics_public):
    async with serve_api(pool, metrics_public=metrics_public) as server:
        table = route_table(server.app)
        assert len(table) >= 19
        refused = await bad_credentials(server)
        keys = {role: await server.api_key(role) for role in Role}
        failures = []
        async with server.client() as client:
            for method, path, access in table:
                where = f"{method} {path}"
                public = access.is_public(server.settings)
                for name, headers in refused.items():
                    response = await call(client, method, path, headers)
                    if public:
                        if response.status_code in (401, 403):
                            failures.append(f"{where} [{name}]: public, got {response.status_code}")
                    elif response.status_code != 401:
                        failures.append(f"{where} [{name}]: want 401, got {response.status_code}")
                    elif not response.headers.get("www-authenticate", "").startswith("Bearer"):
                        failures.append(f"{where} [{name}]: 401 without WWW-Authenticate")
                for role in Role:
                    for kind in ("session", "api key"):
                        # A fresh session per call: the logout route revokes its own.
                        token = await server.token(role) if kind == "session" else keys[role]
                        response = await call(client, method, path, bearer(token))
                        allowed = public or (
                            role.satisfies(access.role)
                            and not (access.users_only and kind == "api key")
                        )
                        got = response.status_code
                        label = f"{where} [{role.value} {kind}]"
                        if allowed and got in (401, 403):
                            failures.append(f"{label}: allowed, got {got}")
                        if not allowed and got != 403:
                            failures.append(f"{label}: want 403, got {got}")
                        if got >= 500:
                            failures.append(f"{label}: server error {got}")
        assert not failures, "\n".join(failures)


def test_a_route_without_declaration_is_refused_and_named():
    stray = Blueprint("stray", __name__)

    @stray.get("/api/v1/forgotten")
    async def forgotten() -> str:
        return "open to all?"

    @stray.get("/api/v1/declared")
    @requires(Role.VIEWER)
    async def declared() -> str:
        return "fine"

    context = ApiContext(
        settings=Settings(), health=HealthState(expected_schema_version=1), pool=None
    )
    with pytest.raises(UndeclaredRoutes, match=r"GET /api/v1/forgotten"):
        create_app(context, extra_blueprints=(stray,))
    app = create_app(context)
    assert check_declarations(app) == []


def test_declaring_twice_is_an_error():
    with pytest.raises(TypeError, match="twice"):

        @requires(Role.ADMIN)
        @requires(Role.VIEWER)
        async def both() -> None:
            pass
