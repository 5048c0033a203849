"""The OpenAPI document as a contract: complete, every reference resolving, and every
route of the route table answering as documented.

Every response of the suite's own client is checked against the document
(``contract.py``, hooked into ``ApiServer.client``); the walk below makes sure each
route is reached at least once with each kind of answer it gives in ordinary use, and
the last test fails when a route of the table was never checked.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import time
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from daemon.modules.auth import Role
from tests.integration.api_server import PASSWORD, bearer
from tests.integration.contract import (
    CHECKED,
    VIOLATIONS,
    ContractChecker,
    ContractViolation,
    route_table,
)
from tests.integration.test_api_documents import OUTAGE, run_pipeline

PROTECTED_ERRORS = {"401", "503"}


def resolver_of(document: dict[str, Any]):
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Registry().with_resource("", resource).resolver()


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


async def document_of(api) -> dict[str, Any]:
    async with api.client() as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


async def test_every_reference_resolves(api):
    document = await document_of(api)
    resolver = resolver_of(document)
    found = refs(document)
    assert found, "the document has no $ref at all?"
    for ref in found:
        assert ref.startswith("#/"), f"only local references: {ref}"
        try:
            resolver.lookup(ref)
        except Unresolvable:
            pytest.fail(f"{ref} does not resolve")
    # Each schema is valid JSON Schema 2020-12 (what OpenAPI 3.1 uses).
    for name, schema in document["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:
            pytest.fail(f"components/schemas/{name} is not a valid schema: {exc}")


def test_a_dangling_reference_is_found():
    document = {"paths": {"/x": {"get": {"schema": {"$ref": "#/$defs/State"}}}}}
    resolver = resolver_of(document)
    with pytest.raises(Unresolvable):
        resolver.lookup(refs(document)[0])


async def test_every_operation_documents_its_answers(api):
    document = await document_of(api)
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            responses = op["responses"]
            successes = [s for s in responses if s.startswith("2")]
            assert successes, f"{where}: no 2xx documented"
            for status in successes:
                if status == "204":
                    assert "content" not in responses[status], where
                    continue
                content = responses[status].get("content")
                assert content, f"{where}: {status} without content"
                for media, described in content.items():
                    assert described["schema"], f"{where}: {status} {media} without schema"
                    if media == "application/json" and path != "/openapi.json":
                        assert "$ref" in described["schema"], f"{where}: {status} has no model"
            for status, answer in responses.items():
                if status[0] in "45" and (path, status) != ("/readyz", "503"):
                    assert list(answer["content"]) == ["application/problem+json"], where
            assert "413" in responses, where
            if op.get("security") != []:
                assert set(responses) >= PROTECTED_ERRORS, where
            if "requestBody" in op:
                assert {"400", "415", "422"} <= set(responses), where
            if any(p["in"] == "query" for p in op.get("parameters", [])):
                assert "422" in responses, where
            if "{" in path:
                assert "404" in responses, where


async def test_request_schemas_say_what_the_server_checks(api):
    document = await document_of(api)
    schemas = document["components"]["schemas"]
    # Query parameters of enum type point into the components (they did not resolve).
    listing = document["paths"]["/api/v1/documents"]["get"]["parameters"]
    state = next(p for p in listing if p["name"] == "state")
    assert state["schema"] == {"$ref": "#/components/schemas/DocumentState"}
    # Login's 401 (wrong credentials) and 429 (throttled).
    login = document["paths"]["/api/v1/auth/login"]["post"]["responses"]
    assert {"200", "401", "429"} <= set(login) and "403" not in login
    # Exactly one of content or url.
    body = Draft202012Validator(schemas["DocumentBody"])
    assert body.is_valid({"content": "x"}) and body.is_valid({"url": "https://a.example"})
    assert not body.is_valid({}) and not body.is_valid({"content": "x", "url": "http://a"})
    assert not body.is_valid({"content": None, "url": None})
    # The upload is described, and reanalyze's body is optional.
    create = document["paths"]["/api/v1/documents"]["post"]["requestBody"]
    form = create["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"]["format"] == "binary"
    reanalyze = document["paths"]["/api/v1/documents/{document_id}/reanalyze"]["post"]
    assert reanalyze["requestBody"]["required"] is False
    # Path ids are bigints.
    show = document["paths"]["/api/v1/users/{user_id}"]["get"]["parameters"][0]
    assert show["schema"] == {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


async def test_every_route_answers_as_documented(api):
    """Reach every route, with its success and its usual errors, through the checking
    client (a mismatch fails the request that got it)."""
    admin = bearer(await api.token(Role.ADMIN))
    viewer_key = bearer(await api.api_key(Role.VIEWER))
    analyst = bearer(await api.token(Role.ANALYST))
    async with api.client() as anonymous:
        assert (await anonymous.get("/livez")).status_code == 200
        assert (await anonymous.get("/readyz")).status_code == 200
        assert (await anonymous.get("/metrics")).status_code == 200
        assert (await anonymous.get("/docs")).status_code == 200
        assert (await anonymous.get("/openapi.json")).status_code == 200
        assert (await anonymous.get("/api/v1/auth/me")).status_code == 401
        wrong = {"email": "nobody@example.org", "password": "wrong"}
        assert (await anonymous.post("/api/v1/auth/login", json=wrong)).status_code == 401
        assert (await anonymous.post("/api/v1/auth/login", content=b"{")).status_code == 415
        malformed = await anonymous.post(
            "/api/v1/auth/login", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 400
        assert (await anonymous.post("/api/v1/auth/login", json={})).status_code == 422

    async with api.client(headers=admin) as client:
        user = await client.post(
            "/api/v1/users", json={"email": "walk@example.org", "password": PASSWORD,
                                   "role": "viewer"},
        )  # fmt: skip
        assert user.status_code == 201
        user_id = user.json()["id"]
        assert (await client.get("/api/v1/users", params={"limit": 1})).status_code == 200
        assert (await client.get("/api/v1/users", params={"role": "x"})).status_code == 422
        assert (await client.get(f"/api/v1/users/{user_id}")).status_code == 200
        assert (await client.get(f"/api/v1/users/{2**63 - 1}")).status_code == 404
        patched = await client.patch(f"/api/v1/users/{user_id}", json={"display_name": "W"})
        assert patched.status_code == 200
        assert (await client.delete(f"/api/v1/users/{user_id}")).status_code == 204

        key = await client.post("/api/v1/api-keys", json={"name": "walk", "role": "viewer"})
        assert key.status_code == 201
        key_id = key.json()["id"]
        assert (await client.get("/api/v1/api-keys")).status_code == 200
        assert (await client.get(f"/api/v1/api-keys/{key_id}")).status_code == 200
        assert (await client.delete(f"/api/v1/api-keys/{key_id}")).status_code == 204
        assert (await client.get("/api/v1/audit", params={"limit": 2})).status_code == 200
        assert (await client.get("/api/v1/audit", params={"actor_type": "x"})).status_code == 422
        audit_csv = await client.get("/api/v1/exports/audit.csv", params={"columns": "id,at"})
        assert audit_csv.status_code == 200 and audit_csv.content.startswith(b"id,at\n")
        bad = await client.get("/api/v1/exports/audit.csv", params={"columns": "x"})
        assert bad.status_code == 422

        me = await client.get("/api/v1/auth/me")
        assert me.status_code == 200 and me.json()["kind"] == "user"
        password = await client.post(
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": PASSWORD + "!"},
        )
        assert password.status_code == 200
        assert (await client.post("/api/v1/auth/logout")).status_code == 204

    async with api.client(headers=viewer_key) as client:
        me = await client.get("/api/v1/auth/me")
        assert me.status_code == 200 and me.json()["kind"] == "api_key"
        assert (await client.post("/api/v1/auth/logout")).status_code == 403
        assert (await client.get("/api/v1/users")).status_code == 403

    async with api.client(headers=analyst) as client:
        created = await client.post("/api/v1/documents", json={"title": "t", "content": OUTAGE})
        assert created.status_code == 202
        document_id = created.json()["id"]
        upload = await client.post(
            "/api/v1/documents",
            files={"file": ("note.txt", io.BytesIO(b"hello"), "text/plain")},
            data={"title": "up"},
        )
        assert upload.status_code == 202
        assert (await client.post("/api/v1/documents", json={})).status_code == 422
        assert await run_pipeline(api, document_id) == "completed"
        assert (await client.get("/api/v1/documents")).status_code == 200
        shown = await client.get(f"/api/v1/documents/{document_id}")
        assert shown.status_code == 200 and shown.json()["case"] is not None
        assert (await client.get("/api/v1/documents/999999")).status_code == 404
        cases = await client.get("/api/v1/cases")
        assert cases.status_code == 200 and cases.json()["items"]
        case_id = cases.json()["items"][0]["id"]
        assert (await client.get(f"/api/v1/cases/{case_id}")).status_code == 200
        assert (await client.get("/api/v1/cases/999999")).status_code == 404
        await walk_case_work(client, case_id)
        exported = await client.get("/api/v1/exports/documents.csv", params={"state": "completed"})
        assert exported.status_code == 200 and exported.content.count(b"\n") == 2
        assert (await client.get("/api/v1/exports/cases.csv")).status_code == 200
        wrong = await client.get("/api/v1/exports/cases.csv", params={"columns": "id,nope"})
        assert wrong.status_code == 422
        assert (await client.get("/api/v1/exports/audit.csv")).status_code == 403
        retry = await client.post(f"/api/v1/documents/{document_id}/retry")
        assert retry.status_code == 409
        reanalyzed = await client.post(f"/api/v1/documents/{document_id}/reanalyze")
        assert reanalyzed.status_code == 202
        other = await client.post(
            f"/api/v1/documents/{document_id}/reanalyze", json={"model": "other"}
        )
        assert other.status_code == 403
        assert (await client.delete(f"/api/v1/documents/{document_id}")).status_code == 403

    another_admin = bearer(await api.token(Role.ADMIN))  # the first one logged out
    async with api.client(headers=another_admin) as client:
        # Retention (issue 15): a hold keeps its document from any deletion until released.
        hold = {"target_type": "document", "target_id": document_id, "reason": "lawsuit"}
        held = await client.post("/api/v1/holds", json=hold)
        assert held.status_code == 201
        hold_id = held.json()["id"]
        nowhere = {"target_type": "case", "target_id": 2**63 - 1, "reason": "x"}
        assert (await client.post("/api/v1/holds", json=nowhere)).status_code == 422
        assert (await client.get("/api/v1/holds", params={"limit": 1})).status_code == 200
        assert (await client.get(f"/api/v1/holds/{hold_id}")).status_code == 200
        assert (await client.get("/api/v1/holds/999999")).status_code == 404
        assert (await client.delete(f"/api/v1/documents/{document_id}")).status_code == 409
        assert (await client.delete(f"/api/v1/holds/{hold_id}")).status_code == 422
        done = {"reason": "settled"}
        assert (await client.delete(f"/api/v1/holds/{hold_id}", params=done)).status_code == 200
        assert (await client.delete(f"/api/v1/holds/{hold_id}", params=done)).status_code == 409
        assert (await client.get("/api/v1/retention/runs")).status_code == 200
        assert (await client.delete(f"/api/v1/documents/{document_id}")).status_code == 204
        # Notification channels (issue 14). The SMTP server's address is refused when
        # sending: the test answers "not delivered" without traffic leaving loopback.
        base = "/api/v1/notification-channels"
        email = {"name": "walk", "kind": "email", "events": ["opened"],
                 "config": {"to": ["duty@example.org"], "host": "127.0.0.1", "port": 9,
                            "security": "tls", "password": "pw"}}  # fmt: skip
        refused = await client.post(base, json=email)
        assert refused.status_code == 422 and "config.host" in refused.text
        email["config"]["host"] = "smtp.example.org"
        created = await client.post(base, json=email)
        assert created.status_code == 201 and created.json()["has_secret"]
        assert "password" not in created.json()["config"]
        channel_id = created.json()["id"]
        assert (await client.post(base, json=email)).status_code == 409
        loopback = {"name": "hook", "kind": "webhook",
                    "config": {"url": "http://127.0.0.1:9/h", "secret": "k"}}  # fmt: skip
        refused = await client.post(base, json=loopback)
        assert refused.status_code == 422 and "config.url" in refused.text
        assert (await client.get(base)).status_code == 200
        assert (await client.get(f"{base}/{channel_id}")).status_code == 200
        assert (await client.get(f"{base}/999999")).status_code == 404
        patched = await client.patch(f"{base}/{channel_id}", json={"min_severity": "high"})
        assert patched.status_code == 200 and patched.json()["min_severity"] == "high"
        async with api.pool.transaction() as conn:  # stored before the address policy
            await conn.execute(  # changed: refused when sending, before any connection
                'UPDATE notification_channels SET config = config || \'{"host": "127.1"}\''
                " WHERE id = %s",
                (channel_id,),
            )
        tested = await client.post(f"{base}/{channel_id}/test")
        assert tested.status_code == 200 and tested.json()["delivered"] is False
        assert tested.json()["reason"].startswith("refused: 127.0.0.1 is a loopback address")
        assert (await client.delete(f"{base}/{channel_id}")).status_code == 204

    # Sources (issue 13).
    async with api.client(headers=another_admin) as client:
        config = {"url": "https://feeds.example.org/a.xml", "auth_header": "k"}
        feed = {"name": "walk", "kind": "feed", "schedule": {"interval_seconds": 3600},
                "config": config}  # fmt: skip
        created = await client.post("/api/v1/sources", json=feed)
        assert created.status_code == 201
        source_id = created.json()["id"]
        assert (await client.post("/api/v1/sources", json=feed)).status_code == 409
        assert (await client.post("/api/v1/sources", json={"kind": "x"})).status_code == 422
        assert (await client.get("/api/v1/sources", params={"limit": 1})).status_code == 200
        assert (await client.get("/api/v1/sources", params={"kind": "x"})).status_code == 422
        assert (await client.get(f"/api/v1/sources/{source_id}")).status_code == 200
        assert (await client.get("/api/v1/sources/999999")).status_code == 404
        patched = await client.patch(f"/api/v1/sources/{source_id}", json={"enabled": False})
        assert patched.status_code == 200
        assert (await client.post(f"/api/v1/sources/{source_id}/poll")).status_code == 409
        await client.patch(f"/api/v1/sources/{source_id}", json={"enabled": True})
        polled = await client.post(f"/api/v1/sources/{source_id}/poll")
        assert polled.status_code == 202
        assert (await client.get(f"/api/v1/sources/{source_id}/polls")).status_code == 200
        assert (await client.get("/api/v1/sources/999999/polls")).status_code == 404
        assert (await client.delete(f"/api/v1/sources/{source_id}")).status_code == 204
        assert (await client.delete(f"/api/v1/sources/{source_id}")).status_code == 404

    # Webhook deliveries (issue 13): signed with the source's secret, no bearer token.
    async with api.client(headers=another_admin) as client:
        hook = {"name": "hook", "kind": "webhook", "config": {"secret": "0123456789abcdef0123"}}
        created = await client.post("/api/v1/sources", json=hook)
        assert created.status_code == 201, created.text
        hook_id = created.json()["id"]
    async with api.client() as client:
        url = f"/api/v1/sources/{hook_id}/webhook"
        body = b'{"title": "pushed", "content": "a signed delivery"}'
        stamp = str(int(time.time()))
        mac = hmac.new(b"0123456789abcdef0123", stamp.encode() + b"." + body, hashlib.sha256)
        signed = {
            "Content-Type": "application/json",
            "Triaged-Delivery-Id": "c-1",
            "Triaged-Timestamp": stamp,
            "Triaged-Signature": f"v1={mac.hexdigest()}",
        }
        assert (await client.post(url, content=body, headers=signed)).status_code == 202
        resent = await client.post(url, content=body, headers=signed)  # the answer was lost
        assert resent.status_code == 202 and resent.headers["Idempotent-Replayed"] == "true"
        replay = {**signed, "Triaged-Delivery-Id": "c-2"}
        assert (await client.post(url, content=body, headers=replay)).status_code == 401
        unsigned = await client.post(url, json={"content": "x"})
        assert unsigned.status_code == 401


async def walk_case_work(client, case_id: int) -> None:
    """Case work's routes and their own statuses (428, 412, 409, 201), checked."""
    base = f"/api/v1/cases/{case_id}"
    shown = await client.get(base)
    tag = shown.headers["ETag"]
    filters = {"assignee": "none", "overdue": "false", "q": "t", "min_escalation_level": "0"}
    assert (await client.get("/api/v1/cases", params=filters)).status_code == 200
    assert (await client.post(f"{base}/acknowledge")).status_code == 428
    assert (
        await client.post(f"{base}/acknowledge", headers={"If-Match": '"0"'})
    ).status_code == 412
    acked = await client.post(f"{base}/acknowledge", headers={"If-Match": tag})
    assert acked.status_code == 200
    tag = acked.headers["ETag"]
    again = await client.post(f"{base}/acknowledge", headers={"If-Match": tag})
    assert again.status_code == 409
    assigned = await client.post(
        f"{base}/assign", json={"user_id": None}, headers={"If-Match": tag}
    )
    assert assigned.status_code == 200
    tag = assigned.headers["ETag"]
    body = {"resolution": "fixed", "note": "done"}
    resolved = await client.post(f"{base}/resolve", json=body, headers={"If-Match": tag})
    assert resolved.status_code == 200
    reopened = await client.post(
        f"{base}/reopen", json={"note": "again"}, headers={"If-Match": resolved.headers["ETag"]}
    )
    assert reopened.status_code == 200
    assert (await client.post(f"{base}/comments", json={"body": "hi"})).status_code == 201
    assert (await client.get(f"{base}/comments")).status_code == 200
    assert (await client.get(f"{base}/events", params={"limit": 2})).status_code == 200
    assert (await client.get("/api/v1/cases/999999/events")).status_code == 404


async def test_the_checker_refuses_what_the_document_does_not_say(api):
    checker = ContractChecker(api.app, api.settings)

    def answer(status: int, body: bytes, media: str = "application/json") -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": media})

    checker.check("GET", "/livez", answer(200, b'{"status": "ok"}'))
    with pytest.raises(ContractViolation, match="status not documented"):
        checker.check("GET", "/livez", answer(418, b"{}"))
    with pytest.raises(ContractViolation, match="does not match its schema"):
        checker.check("GET", "/livez", answer(200, b'{"status": "ok", "extra": 1}'))
    with pytest.raises(ContractViolation, match="content type"):
        checker.check("GET", "/livez", answer(200, b'{"status": "ok"}', "text/html"))
    with pytest.raises(ContractViolation, match="Location missing"):
        checker.check("POST", "/api/v1/users", answer(201, b"{}"))
    with pytest.raises(ContractViolation, match="without a body"):
        checker.check("DELETE", "/api/v1/users/1", answer(204, b"x"))
    # Not a route: routing's own 404 and 405 are nobody's operation.
    checker.check("GET", "/no/such/path", answer(404, b"", "text/plain"))


async def test_every_route_of_the_table_was_checked(api):
    """Last in this file: no response of the session so far strayed from the document,
    and the walk above (with whatever else of the suite ran before) reached every
    (route, method) of the route table through the checking client."""
    assert not VIOLATIONS, "\n".join(VIOLATIONS)
    checked = {(path, method) for path, method, _ in CHECKED}
    missing = route_table(api.app) - checked
    assert not missing, f"never checked against the document: {sorted(missing)}"


async def test_bodies_are_refused_when_the_document_refuses_them(api):
    """JSON types are not coerced: 0 is no boolean, a number no date (found by the
    generated-input run: the document said boolean, the server took 0 for false)."""
    admin = bearer(await api.token(Role.ADMIN))
    target = await api.user(Role.VIEWER)
    async with api.client(headers=admin) as client:
        for active in (0, 1, "false", "yes"):
            response = await client.patch(f"/api/v1/users/{target.id}", json={"active": active})
            assert response.status_code == 422, (active, response.text)
            assert response.json()["errors"][0]["field"] == "active"
        for expires_at in (4102444800, 4102444800.5, "4102444800", "2100-01-01"):
            response = await client.post(
                "/api/v1/api-keys", json={"name": "k", "role": "viewer", "expires_at": expires_at}
            )
            assert response.status_code == 422, (expires_at, response.text)
            assert response.json()["errors"][0]["field"] == "expires_at"
        shown = await client.get(f"/api/v1/users/{target.id}")
        assert shown.json()["active"] is True
        # A query's boolean is true or false, as OpenAPI writes it.
        for path, name in (("/api/v1/users", "active"), ("/api/v1/api-keys", "include_revoked")):
            for value in ("1", "yes", "on", "False"):
                response = await client.get(path, params={name: value})
                assert response.status_code == 422, (path, value, response.text)
                assert response.json()["errors"][0]["field"] == name
            assert (await client.get(path, params={name: "false"})).status_code == 200
        # A query's date-time is an RFC 3339 date-time, not a Unix time.
        for path, name in (("/api/v1/documents", "until"), ("/api/v1/audit", "since")):
            for value in ("0.5", "1700000000", "2026-01-01", "2026-01-01T00:00:00"):
                response = await client.get(path, params={name: value})
                assert response.status_code == 422, (path, value, response.text)
                assert response.json()["errors"][0]["field"] == name
            fine = await client.get(path, params={name: "2026-01-01T00:00:00.5+01:00"})
            assert fine.status_code == 200, fine.text
