"""Hostile request input found by an outside probe (issue 12): deeply nested JSON, huge
numbers, non-ASCII digits in cursors and ids, and the small inconsistencies of the error
responses. Each answers a clear 4xx problem, never a 500, and logs no traceback."""

from __future__ import annotations

import json
import logging

import pytest
import trio

from daemon.modules.auth import Role
from tests.e2e.raw_http import read_response
from tests.integration.api_server import bearer

PROBLEM = "application/problem+json"
DEEP = "[" * 1000 + "]" * 1000
HUGE_INT = "1" * 5000


def _assert_no_crash_logged(caplog: pytest.LogCaptureFixture) -> None:
    crashes = [r for r in caplog.records if getattr(r, "action", None) == "http.crash"]
    assert not crashes, [r.getMessage() for r in crashes]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_deeply_nested_login_body_is_refused(api, caplog):
    caplog.set_level(logging.INFO)
    body = '{"email": "a@example.org", "password": ' + DEEP + "}"
    async with api.client() as client:
        response = await client.post(
            "/api/v1/auth/login", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "nested deeper than 64" in response.json()["detail"]
    _assert_no_crash_logged(caplog)


async def test_nesting_up_to_the_limit_is_parsed(api):
    token = await api.token(Role.ANALYST)

    def document(arrays: int) -> str:
        # the document is level 1, metadata level 2, then the arrays; brackets in a
        # string are text, not nesting
        return '{"content": "[[[[{{{{", "metadata": {"a": ' + "[" * arrays + "]" * arrays + "}}"

    async with api.client() as client:
        headers = {"Content-Type": "application/json", **bearer(token)}
        deepest = await client.post("/api/v1/documents", content=document(62), headers=headers)
        too_deep = await client.post("/api/v1/documents", content=document(63), headers=headers)
    assert deepest.status_code == 202, deepest.text
    assert too_deep.status_code == 400, too_deep.text


async def test_deeply_nested_upload_metadata_is_refused(api, caplog):
    caplog.set_level(logging.INFO)
    token = await api.token(Role.ANALYST)
    async with api.client() as client:
        response = await client.post(
            "/api/v1/documents",
            files={"file": ("a.txt", b"hello", "text/plain")},
            data={"metadata": '{"a": ' + DEEP + "}"},
            headers=bearer(token),
        )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "metadata" in response.json()["detail"]
    _assert_no_crash_logged(caplog)


async def test_huge_integer_in_login_is_refused_with_the_field_named(api, caplog):
    caplog.set_level(logging.INFO)
    body = '{"email": "a@example.org", "password": ' + HUGE_INT + "}"
    async with api.client() as client:
        response = await client.post(
            "/api/v1/auth/login", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["field"] == "password"
    _assert_no_crash_logged(caplog)


@pytest.mark.parametrize(
    "number", [HUGE_INT, "-" + HUGE_INT, "1e999", "-1e999", "NaN", "Infinity", "-Infinity"]
)
async def test_numbers_out_of_range_in_upload_metadata_are_refused(api, caplog, number):
    caplog.set_level(logging.INFO)
    token = await api.token(Role.ANALYST)
    async with api.client() as client:
        response = await client.post(
            "/api/v1/documents",
            files={"file": ("a.txt", b"hello", "text/plain")},
            data={"metadata": '{"deep": {"n": [1, ' + number + "]}}"},
            headers=bearer(token),
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "metadata.deep.n.1"
        response = await client.post(
            "/api/v1/documents",
            content='{"content": "x", "metadata": {"n": ' + number + "}}",
            headers={"Content-Type": "application/json", **bearer(token)},
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "metadata.n"
    _assert_no_crash_logged(caplog)


async def test_ordinary_numbers_still_pass(api):
    token = await api.token(Role.ANALYST)
    async with api.client() as client:
        response = await client.post(
            "/api/v1/documents",
            content='{"content": "x", "metadata": {"n": [12345678901234567890, -1.5, 0]}}',
            headers={"Content-Type": "application/json", **bearer(token)},
        )
        assert response.status_code == 202, response.text
        shown = await client.get(response.headers["location"], headers=bearer(token))
    assert shown.json()["metadata"] == {"n": [12345678901234567890, -1.5, 0]}


# Non-ASCII digits: "²" (int() refuses it), "٣" (Arabic-Indic three: int() takes it),
# "%EF%BC%91" (fullwidth one), whitespace and signs pydantic's int parsing would forgive, and
# values past a bigint.
BAD_NUMBERS = ["%C2%B2", "%D9%A3", "%EF%BC%91", "%201", "%2B1", "1_0", "1.0", "9" * 19, "9" * 40]
LISTINGS = ["/api/v1/audit", "/api/v1/documents", "/api/v1/cases", "/api/v1/users"]


@pytest.mark.parametrize("path", LISTINGS)
@pytest.mark.parametrize("value", BAD_NUMBERS)
async def test_cursor_accepts_only_ascii_digits_within_a_bigint(api, caplog, path, value):
    caplog.set_level(logging.INFO)
    token = await api.token(Role.ADMIN)
    async with api.client() as client:
        response = await client.get(f"{path}?cursor={value}", headers=bearer(token))
        assert response.status_code == 422, (value, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["errors"][0]["field"] == "cursor"
        # documents declare at most 18 digits, the others any bigint
        fine = await client.get(f"{path}?cursor={10**18 - 1}", headers=bearer(token))
        assert fine.status_code == 200, fine.text
    _assert_no_crash_logged(caplog)


@pytest.mark.parametrize(
    "query", ["actor_id=%D9%A3", "actor_id=%201", "actor_id=" + "9" * 19, "limit=%D9%A3"]
)
async def test_numeric_query_parameters_accept_only_ascii_digits(api, query):
    token = await api.token(Role.ADMIN)
    async with api.client() as client:
        response = await client.get(f"/api/v1/audit?{query}", headers=bearer(token))
    assert response.status_code == 422, (query, response.text)
    assert response.json()["errors"][0]["field"] == query.split("=")[0]


ID_ROUTES = [
    ("GET", "/api/v1/documents/{}"),
    ("POST", "/api/v1/documents/{}/retry"),
    ("POST", "/api/v1/documents/{}/reanalyze"),
    ("DELETE", "/api/v1/documents/{}"),
    ("GET", "/api/v1/cases/{}"),
    ("GET", "/api/v1/users/{}"),
    ("PATCH", "/api/v1/users/{}"),
    ("DELETE", "/api/v1/users/{}"),
    ("GET", "/api/v1/api-keys/{}"),
    ("DELETE", "/api/v1/api-keys/{}"),
]


@pytest.mark.parametrize(("method", "route"), ID_ROUTES)
async def test_path_ids_accept_only_ascii_digits_within_a_bigint(api, caplog, method, route):
    caplog.set_level(logging.INFO)
    token = await api.token(Role.ADMIN)
    async with api.client() as client:
        for value in ["%D9%A3", "%EF%BC%91", "%C2%B2", "9" * 19, "9" * 40]:
            response = await client.request(
                method, route.format(value), headers=bearer(token), json={"active": True}
            )
            assert response.status_code == 404, (value, response.text)
            assert response.headers["content-type"] == PROBLEM
        body = {} if route.endswith("reanalyze") else {"active": True}
        largest = await client.request(
            method, route.format(2**63 - 1), headers=bearer(token), json=body
        )
        assert largest.status_code == 404, largest.text
        assert "No resource at this path" not in largest.text  # matched the route
    _assert_no_crash_logged(caplog)


async def _raw_login(port: int, head: bytes, chunks: list[bytes]) -> tuple[int, dict]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\n" + head + b"\r\n"
        )
        for chunk in chunks:
            await stream.send_all(chunk)
        status, _headers, body = await read_response(stream)
    return status, json.loads(body)


async def test_one_title_per_status_everywhere(api):
    token = await api.token(Role.ADMIN)
    async with api.client() as client:
        validation = await client.get("/api/v1/audit?limit=0", headers=bearer(token))
    # 413 from the edge (a declared length) and from the app (a chunked body over
    # login's 1 MB)
    port = api.settings.http_port
    declared = await _raw_login(port, b"Content-Length: 999999999\r\n", [])
    chunk = b"10000\r\n" + b" " * 65536 + b"\r\n"
    chunked = await _raw_login(port, b"Transfer-Encoding: chunked\r\n", [chunk] * 20)
    assert validation.status_code == 422
    assert validation.json()["title"] == "Unprocessable Content"
    assert declared[0] == chunked[0] == 413
    assert declared[1]["title"] == chunked[1]["title"] == "Content Too Large"


async def test_204_has_no_content_type(api):
    token = await api.token(Role.ADMIN)
    async with api.client() as client:
        created = await client.post(
            "/api/v1/documents",
            json={"content": "x"},
            headers=bearer(token),
        )
        deleted = await client.delete(created.headers["location"], headers=bearer(token))
    assert deleted.status_code == 204
    assert "content-type" not in deleted.headers
    assert deleted.content == b""


@pytest.mark.parametrize(
    ("role", "path", "body", "field"),
    [
        (
            "admin",
            "/api/v1/sources",
            {"name": "s", "kind": "upload", "limits": {"items_per_poll": True}},
            "limits.items_per_poll",
        ),
        (
            "admin",
            "/api/v1/sources",
            {
                "name": "s",
                "kind": "feed",
                "config": {"url": "https://feed.example.org/"},
                "schedule": {"interval_seconds": True},
            },
            "schedule.interval_seconds",
        ),
        ("analyst", "/api/v1/documents", {"content": "x", "source_id": True}, "source_id"),
        (
            "admin",
            "/api/v1/holds",
            {"target_type": "document", "target_id": "1", "reason": "r"},
            "target_id",
        ),
    ],
)
async def test_json_integers_are_integers_not_true_or_strings(api, role, path, body, field):
    # Lax validation would read true as 1 and "1" as 1: a body the schema calls invalid
    # must not be accepted (Schemathesis found POST /sources taking items_per_poll: true).
    token = await api.token(Role.ADMIN if role == "admin" else Role.ANALYST)
    async with api.client() as client:
        response = await client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 422, response.text
    assert field in response.text
