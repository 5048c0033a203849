"""The authorization matrix: every route of the app against every kind of caller.

What each route *should* allow is the table :data:`INTENDED` below, written from what
README.md and docs/ingestion.md promise, not from the route's own declaration: a route
declared with the wrong role fails here. Every route x every kind of caller answers as
the table says: public routes answer anyone; the others answer 401 (with
``WWW-Authenticate``) to no, malformed, expired or revoked credentials and to a
disabled user's session, 403 to a role that is too low (or an API key on a users-only
route), and something else (the route's own answer) to a role that is high enough.

A route of the app missing from the table, or a table entry naming no route, fails
(:func:`test_the_intended_table_names_every_route_and_no_other`): a new route needs its
intended role written here. A route added without a declaration fails too:
``create_app`` refuses it and ``check_declarations`` names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Intent:
    """Who a route is meant for. ``role`` None: anyone, without credentials.
    ``users_only``: a user's session, never an API key (the caller's own login).
    ``public_if_metrics_public``: public while ``TRIAGED_METRICS_PUBLIC`` is true."""

    role: Role | None
    users_only: bool = False
    public_if_metrics_public: bool = False
    # No bearer credentials, but a signature (webhook deliveries): every caller of the
    # matrix gets 401, challenged with the Triaged-Signature scheme.
    signed: bool = False

    def is_public(self, settings: Settings) -> bool:
        return self.role is None or (self.public_if_metrics_public and settings.metrics_public)


PUBLIC = Intent(None)
VIEWER, ANALYST, ADMIN = Intent(Role.VIEWER), Intent(Role.ANALYST), Intent(Role.ADMIN)
OWN_LOGIN = Intent(Role.VIEWER, users_only=True)
SIGNED = Intent(None, signed=True)

# README "Authentication and roles": unauthenticated routes; viewer reads and exports;
# analyst also uploads and works documents and cases; admin: users, API keys, audit log;
# logout and password change are your-own-login routes. docs/ingestion.md: deleting a
# document is admin's, retry and reanalyze are analyst's.
INTENDED: dict[tuple[str, str], Intent] = {
    ("GET", "/livez"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/metrics"): Intent(Role.VIEWER, public_if_metrics_public=True),
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): OWN_LOGIN,
    ("GET", "/api/v1/auth/me"): VIEWER,
    ("POST", "/api/v1/auth/password"): OWN_LOGIN,
    ("GET", "/api/v1/documents"): VIEWER,
    ("POST", "/api/v1/documents"): ANALYST,
    ("GET", "/api/v1/documents/<int:document_id>"): VIEWER,
    ("DELETE", "/api/v1/documents/<int:document_id>"): ADMIN,
    ("POST", "/api/v1/documents/<int:document_id>/retry"): ANALYST,
    ("POST", "/api/v1/documents/<int:document_id>/reanalyze"): ANALYST,
    ("GET", "/api/v1/cases"): VIEWER,
    ("GET", "/api/v1/cases/<int:case_id>"): VIEWER,
    # Case work (README "Case work"): viewers read, analysts act.
    ("POST", "/api/v1/cases/<int:case_id>/acknowledge"): ANALYST,
    ("POST", "/api/v1/cases/<int:case_id>/assign"): ANALYST,
    ("POST", "/api/v1/cases/<int:case_id>/resolve"): ANALYST,
    ("POST", "/api/v1/cases/<int:case_id>/reopen"): ANALYST,
    ("GET", "/api/v1/cases/<int:case_id>/comments"): VIEWER,
    ("POST", "/api/v1/cases/<int:case_id>/comments"): ANALYST,
    ("GET", "/api/v1/cases/<int:case_id>/events"): VIEWER,
    ("GET", "/api/v1/users"): ADMIN,
    ("POST", "/api/v1/users"): ADMIN,
    ("GET", "/api/v1/users/<int:user_id>"): ADMIN,
    ("PATCH", "/api/v1/users/<int:user_id>"): ADMIN,
    ("DELETE", "/api/v1/users/<int:user_id>"): ADMIN,
    ("GET", "/api/v1/api-keys"): ADMIN,
    ("POST", "/api/v1/api-keys"): ADMIN,
    ("GET", "/api/v1/api-keys/<int:key_id>"): ADMIN,
    ("DELETE", "/api/v1/api-keys/<int:key_id>"): ADMIN,
    # Retention (issue 15): holds name litigation and steer deletion; admins only.
    ("POST", "/api/v1/holds"): ADMIN,
    ("GET", "/api/v1/holds"): ADMIN,
    ("GET", "/api/v1/holds/<int:hold_id>"): ADMIN,
    ("DELETE", "/api/v1/holds/<int:hold_id>"): ADMIN,
    ("GET", "/api/v1/retention/runs"): ADMIN,
    ("GET", "/api/v1/audit"): ADMIN,
    # Issue 13 (README "Sources"): admins write sources, analysts poll now, viewers read.
    ("GET", "/api/v1/sources"): VIEWER,
    ("POST", "/api/v1/sources"): ADMIN,
    ("GET", "/api/v1/sources/<int:source_id>"): VIEWER,
    ("PATCH", "/api/v1/sources/<int:source_id>"): ADMIN,
    ("DELETE", "/api/v1/sources/<int:source_id>"): ADMIN,
    ("POST", "/api/v1/sources/<int:source_id>/poll"): ANALYST,
    ("GET", "/api/v1/sources/<int:source_id>/polls"): VIEWER,
    # Issue 13 (README "Webhook sources"): authenticated by the delivery's signature.
    ("POST", "/api/v1/sources/<int:source_id>/webhook"): SIGNED,
    ("GET", "/api/v1/exports/documents.csv"): VIEWER,
    ("GET", "/api/v1/exports/cases.csv"): VIEWER,
    ("GET", "/api/v1/exports/audit.csv"): ADMIN,
    # Issue 14: notification channels are admin's (secrets, outbound URLs).
    ("GET", "/api/v1/notification-channels"): ADMIN,
    ("POST", "/api/v1/notification-channels"): ADMIN,
    ("GET", "/api/v1/notification-channels/<int:channel_id>"): ADMIN,
    ("PATCH", "/api/v1/notification-channels/<int:channel_id>"): ADMIN,
    ("DELETE", "/api/v1/notification-channels/<int:channel_id>"): ADMIN,
    ("POST", "/api/v1/notification-channels/<int:channel_id>/test"): ADMIN,
}


def app_routes(app) -> list[tuple[str, str]]:
    """(method, route template) for every route of the app (HEAD and OPTIONS aside)."""
    return sorted(
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    )


def route_table(app):
    """(method, concrete path, intent) for every route of the app."""
    table = []
    for method, rule in app_routes(app):
        assert (method, rule) in INTENDED, f"{method} {rule} is not in INTENDED"
        path = re.sub(r"<(?:\w+:)?\w+>", MISSING_ID, rule)
        table.append((method, path, INTENDED[method, rule]))
    return table


def plain_app():
    context = ApiContext(
        settings=Settings(), health=HealthState(expected_schema_version=1), pool=None
    )
    return create_app(context)


def test_the_intended_table_names_every_route_and_no_other():
    routes = set(app_routes(plain_app()))
    missing = sorted(routes - set(INTENDED))
    stale = sorted(set(INTENDED) - routes)
    assert not missing, f"routes without an intended role in INTENDED: {missing}"
    assert not stale, f"INTENDED names routes the app does not have: {stale}"


def test_every_declaration_matches_the_intended_role():
    """The same check as the matrix below, without a server: a clear message first."""
    app = plain_app()
    wrong = []
    for rule in app.url_map.iter_rules():
        access = access_of(app.view_functions[rule.endpoint])
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            intent = INTENDED.get((method, rule.rule))
            if intent is None:
                continue  # reported by the test above
            declared = Intent(
                access.role,
                users_only=access.users_only,
                public_if_metrics_public=access.public_when is not None,
                signed=access.signed,
            )
            if declared != intent:
                wrong.append(f"{method} {rule.rule}: declared {declared}, intended {intent}")
    assert not wrong, "\n".join(sorted(wrong))


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


async def signed_route_refuses(client, method, path, refused, keys) -> list[str]:
    """A route authenticated by a signature refuses every bearer credential, good or bad."""
    failures = []
    callers = {**refused, **{f"{role.value} api key": bearer(key) for role, key in keys.items()}}
    for name, headers in callers.items():
        response = await call(client, method, path, headers)
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code != 401 or not challenge.startswith("Triaged-Signature"):
            failures.append(f"{method} {path} [{name}]: want a signature's 401, got "
                            f"{response.status_code} {challenge!r}")  # fmt: skip
    return failures


@pytest.mark.parametrize("metrics_public", [True, False])
async def test_every_route_answers_as_declared(pool, metrics_public):
    async with serve_api(pool, metrics_public=metrics_public) as server:
        table = route_table(server.app)
        assert len(table) == len(INTENDED)
        refused = await bad_credentials(server)
        keys = {role: await server.api_key(role) for role in Role}
        failures = []
        async with server.client() as client:
            for method, path, intent in table:
                where = f"{method} {path}"
                public = intent.is_public(server.settings)
                if intent.signed:
                    failures += await signed_route_refuses(client, method, path, refused, keys)
                    continue
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
                            role.satisfies(intent.role)
                            and not (intent.users_only and kind == "api key")
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
