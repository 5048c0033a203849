"""Defect 4 of issue 12: no request, however invented, may add a Prometheus series.

Each label of the HTTP metrics is attacked on its own (invented methods, invented paths,
requests that end in unusual statuses), 100 distinct hostile values each; the number of
series and the size of ``/metrics`` must stay where a handful of ordinary requests put
them, and every label value must come from its closed set.
"""

from __future__ import annotations

import re
import uuid
from http import HTTPStatus

import pytest

from daemon.api.http_metrics import METHODS, UNMATCHED, route_templates
from tests.integration.api_server import serve_api

HOSTILE_REQUESTS = 100
SERIES = re.compile(r"^(triaged_http_request[a-z_]*?)(?:_bucket|_sum|_count)?\{(.*)\} ", re.M)
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def http_series(text: str) -> list[dict[str, str]]:
    """The label sets of the HTTP metrics' samples (``le`` dropped: one series each)."""
    found = []
    for match in SERIES.finditer(text):
        labels = dict(LABEL.findall(match.group(2)))
        labels.pop("le", None)
        labels["__name__"] = match.group(1)
        found.append(labels)
    return [dict(t) for t in {tuple(sorted(d.items())) for d in found}]


def invented_method(n: int) -> tuple[str, str, dict]:
    return (f"X{n:03d}{'M' * 200}", "/livez", {})


def invented_path(n: int) -> tuple[str, str, dict]:
    return ("GET", f"/scan/{uuid.uuid4().hex}/{n}/{'p' * 200}", {})


def odd_status(n: int) -> tuple[str, str, dict]:
    """Requests answered by the app with statuses other than the usual 200/401."""
    cases = [
        ("DELETE", "/livez", {}),  # 405
        ("POST", "/api/v1/auth/login", {"content": b"{not json"}),  # 400
        ("POST", "/api/v1/auth/login", {"json": {"email": n}}),  # 422
        ("GET", f"/api/v1/documents/{'9' * (n + 1)}", {}),  # 401 / 404 / 422
        (
            "POST",
            "/api/v1/auth/login",
            {"content": b"x" * 10, "headers": {"Content-Type": f"x/{n}"}},
        ),
        ("TRACE", "/livez", {}),
        ("OPTIONS", f"/u{n}", {"headers": {"Origin": f"https://{n}.example"}}),
    ]
    return cases[n % len(cases)]


async def scrape(client) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


@pytest.mark.parametrize("hostile", [invented_method, invented_path, odd_status])
async def test_hostile_requests_add_no_series(pool, hostile):
    async with serve_api(pool) as api, api.client() as client:
        for path in ("/livez", "/readyz", "/api/v1/users/1", "/nothing-here"):
            await client.get(path)
        await client.request("BREW", "/livez")
        before = await scrape(client)
        for n in range(HOSTILE_REQUESTS):
            method, path, kwargs = hostile(n)
            response = await client.request(method, path, **kwargs)
            assert response.status_code < 500, (method, path, response.status_code)
        after = await scrape(client)
    series_before, series_after = http_series(before), http_series(after)
    # The hostile requests may add a few series (a new status of a known route, the
    # ``other`` method, ``unmatched``): never one per request.
    assert len(series_after) <= len(series_before) + 12, len(series_after) - len(series_before)
    assert len(after) <= len(before) + 16_000, (len(before), len(after))
    routes = route_templates(api.app) | {UNMATCHED}
    statuses = {str(s.value) for s in HTTPStatus} | {"other"}
    for labels in series_after:
        assert labels["method"] in METHODS | {"other"}, labels
        assert labels["route"] in routes, labels
        if "status" in labels:
            assert labels["status"] in statuses, labels
