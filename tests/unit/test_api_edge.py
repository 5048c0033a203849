"""The HTTP edge in process: problem+json for every error, request ids, the body limit."""

from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel, Field

from daemon.api import ApiContext, create_app, create_asgi
from daemon.api.access import public
from daemon.api.body import json_body
from daemon.shared.config import Settings
from daemon.shared.health import HealthState


class Item(BaseModel):
    name: str = Field(min_length=1)
    count: int


@pytest.fixture
def client():
    settings = Settings(max_request_bytes=2048)
    context = ApiContext(
        settings=settings, health=HealthState(expected_schema_version=1), pool=None
    )
    app = create_app(context)

    @app.post("/test/items")
    @public
    async def items():
        item = await json_body(Item)
        return {"name": item.name, "count": item.count}

    @app.get("/test/crash")
    @public
    async def crash():
        raise RuntimeError("secret internal detail")

    transport = httpx.ASGITransport(app=create_asgi(app, context))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _is_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_livez_is_ok_and_sets_a_request_id(client):
    response = await client.get("/livez")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert len(response.headers["x-request-id"]) == 32
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_sane_request_id_is_echoed_and_a_bad_one_replaced(client):
    echoed = await client.get("/livez", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    replaced = await client.get("/livez", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"


async def test_readyz_without_a_database_is_503_with_reasons(client):
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "not connected"
    assert response.json()["checks"]["started"] == "starting"


async def test_unknown_path_is_404_problem(client):
    _is_problem(await client.get("/nope"), 404)


async def test_wrong_method_is_405_problem_with_allow(client):
    response = await client.delete("/livez")
    _is_problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_malformed_json_is_400_problem(client):
    response = await client.post(
        "/test/items", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in _is_problem(response, 400)["detail"]


async def test_wrong_media_type_is_415_problem(client):
    response = await client.post(
        "/test/items",
        content=b"name=x",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    _is_problem(response, 415)


async def test_invalid_fields_are_422_with_field_errors(client):
    response = await client.post("/test/items", json={"name": "", "count": "many"})
    body = _is_problem(response, 422)
    assert {e["field"] for e in body["errors"]} == {"name", "count"}


async def test_valid_json_reaches_the_route(client):
    response = await client.post("/test/items", json={"name": "a", "count": 2})
    assert response.json() == {"name": "a", "count": 2}


async def test_declared_oversized_body_is_413_before_the_app(client):
    response = await client.post(
        "/test/items", content=b"x" * 5000, headers={"content-type": "application/json"}
    )
    _is_problem(response, 413)


async def test_streamed_oversized_body_is_413(client):
    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    response = await client.post(
        "/test/items", content=chunks(), headers={"content-type": "application/json"}
    )
    _is_problem(response, 413)


async def test_crash_is_500_without_internals(client):
    response = await client.get("/test/crash")
    body = _is_problem(response, 500)
    assert "secret internal detail" not in response.text
    assert "traceback" not in response.text.lower()
    assert body["detail"]


async def test_a_route_added_without_declaration_fails_closed(client):
    app = client._transport.app.app

    @app.get("/test/undeclared")
    async def undeclared():
        return {"open": True}

    response = await client.get("/test/undeclared")
    assert response.status_code == 500
    assert "open" not in response.text
