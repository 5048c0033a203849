"""Edge behaviour over real HTTP: security headers, CORS, trusted proxies, /metrics,
the OpenAPI document and the docs page; ``/livez`` answered in the pass that read it."""

from __future__ import annotations

import re

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.events import RawData
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.worker_context import WorkerContext

from daemon.api.hypercorn_connection import Http11Protocol
from daemon.modules.audit import AuditFilter, list_events
from daemon.modules.auth import Role
from tests.integration.api_server import PASSWORD, api_stack, bearer, serve_api
from tests.schedule_points import StepsOf


async def test_security_headers_everywhere(api):
    async with api.client() as client:
        for path in ("/livez", "/api/v1/auth/me", "/no/such/path", "/openapi.json"):
            response = await client.get(path)
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert response.headers["x-frame-options"] == "DENY", path
            assert response.headers["referrer-policy"] == "no-referrer", path
            assert response.headers["content-security-policy"].startswith("default-src 'none'")
            assert "access-control-allow-origin" not in response.headers
        assert "cache-control" not in (await client.get("/livez")).headers
        assert (await client.get("/api/v1/nothing")).headers["cache-control"] == "no-store"


async def test_cors_is_off_by_default(api):
    async with api.client() as client:
        preflight = await client.options(
            "/api/v1/auth/me",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        actual = await client.get("/livez", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code >= 400
    assert "access-control-allow-origin" not in actual.headers


async def test_cors_allow_list(pool):
    async with serve_api(pool, cors_allowed_origins="https://ops.example.org") as api:
        token = await api.token(Role.VIEWER)
        async with api.client() as client:
            preflight = await client.options(
                "/api/v1/auth/me",
                headers={
                    "Origin": "https://ops.example.org",
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "authorization",
                },
            )
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == "https://ops.example.org"
            assert "Authorization" in preflight.headers["access-control-allow-headers"]
            assert "access-control-allow-credentials" not in preflight.headers
            refused = await client.options(
                "/api/v1/auth/me",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
            )
            assert refused.status_code == 403
            assert "access-control-allow-origin" not in refused.headers
            actual = await client.get(
                "/api/v1/auth/me",
                headers={"Origin": "https://ops.example.org", **bearer(token)},
            )
            assert actual.status_code == 200
            assert actual.headers["access-control-allow-origin"] == "https://ops.example.org"
            assert "Retry-After" in actual.headers["access-control-expose-headers"]
            assert actual.headers["vary"] == "Origin"
            other = await client.get("/livez", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers


async def _login_addresses(api, forwarded: str) -> list[str | None]:
    user = await api.user()
    async with api.client() as client:
        response = await client.post(
            "/api/v1/auth/login",
            json={"email": user.email, "password": PASSWORD},
            headers={"X-Forwarded-For": forwarded},
        )
        assert response.status_code == 200
    async with api.pool.connection() as conn:
        page = await list_events(conn, filters=AuditFilter(action="auth.login"))
    return [e.client_addr for e in page.items]


async def test_forwarded_for_is_ignored_without_trusted_proxies(api):
    assert await _login_addresses(api, "203.0.113.9") == ["127.0.0.1"]


async def test_forwarded_for_from_a_trusted_proxy(pool):
    async with serve_api(pool, http_trusted_proxies="127.0.0.0/8, 10.0.0.0/8") as api:
        # forged by the client, then appended by two proxies: 198.51.100.7 is the client.
        chain = "1.2.3.4, 198.51.100.7, 10.1.2.3"
        assert await _login_addresses(api, chain) == ["198.51.100.7"]


async def test_metrics_public_by_default(api):
    async with api.client() as client:
        await client.get("/livez")
        await client.get("/api/v1/users/12")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'triaged_http_requests_total{method="GET",route="/livez",status="200"} 1' in text
    assert (
        'triaged_http_requests_total{method="GET",route="/api/v1/users/<int:user_id>",'
        'status="401"} 1' in text
    )
    assert "triaged_database_up 1" in text
    assert 'triaged_documents{state="completed"} 0' in text
    assert re.search(r'triaged_http_request_duration_seconds_bucket\{.*le="\+Inf"\} \d', text)


async def test_metrics_behind_credentials(pool):
    async with serve_api(pool, metrics_public=False) as api:
        key = await api.api_key(Role.VIEWER)
        async with api.client() as client:
            assert (await client.get("/metrics")).status_code == 401
            assert (await client.get("/metrics", headers=bearer(key))).status_code == 200


async def test_openapi_document_describes_every_route(api):
    async with api.client() as client:
        document = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert document["openapi"] == "3.1.0"
    operations = {
        (method.upper(), path): op
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    }
    rules = {
        (method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in api.app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert set(operations) == rules
    login = operations[("POST", "/api/v1/auth/login")]
    assert login["security"] == []
    assert login["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LoginBody"
    }
    assert operations[("DELETE", "/api/v1/users/{user_id}")]["x-required-role"] == "admin"
    assert operations[("POST", "/api/v1/auth/password")]["x-users-only"] is True
    audit_params = {p["name"] for p in operations[("GET", "/api/v1/audit")]["parameters"]}
    assert {"action", "since", "cursor", "limit"} <= audit_params
    assert set(document["components"]["schemas"]) >= {"LoginBody", "UserCreateBody", "Problem"}

    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    csp = docs.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'; style-src 'sha256-")
    assert "script" not in docs.text.lower()
    assert "/api/v1/auth/login" in docs.text


async def test_livez_is_answered_before_its_reading_task_yields(pool):
    """The whole stack (edge, app, metrics, access log) answers ``GET /livez`` in the
    connection's reading task, before that task takes a schedule point: in the pass of the
    loop that read the request (under load each pass takes milliseconds; issue 16)."""
    *_, asgi = api_stack(pool)
    app = ASGIWrapper(asgi)
    steps = StepsOf(trio.lowlevel.current_task())
    writes: list[tuple[int, bytes]] = []

    async def send(event: object) -> None:  # the connection under the protocol
        if isinstance(event, RawData):
            writes.append((steps.ended, event.data))

    async with TaskGroup() as task_group:
        protocol = Http11Protocol(
            app, Config(), WorkerContext(None), task_group, {}, False, ("127.0.0.1", 5),
            ("127.0.0.1", 8080), send,
        )  # fmt: skip
        for _ in range(2):  # the first request of an app, then any later one
            steps.ended = 0
            trio.lowlevel.add_instrument(steps)
            try:
                await protocol.handle(RawData(data=b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n"))
            finally:
                trio.lowlevel.remove_instrument(steps)
            at, data = writes.pop()
            assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b'{"status":"ok"}\n')
            assert b"x-request-id: " in data and b"x-content-type-options: nosniff" in data
            assert at == 0, f"written after {at} schedule point(s) of the reading task"
