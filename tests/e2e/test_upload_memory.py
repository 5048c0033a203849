"""Memory of the real ``triaged api`` process under 16 concurrent 20 MB uploads.

The process's peak resident set (``VmHWM``) must stay within the budget documented in
``docs/security.md`` with the default settings; every upload answered 202 must exist
with all its bytes, and every refused one must have been told 503 with
``Retry-After`` (the budget of body bytes in flight).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from tests.client_warnings import ABANDONED_REQUEST_BODY
from tests.e2e.process import analyst_key

pytestmark = pytest.mark.e2e

UPLOADS = 16
UPLOAD_BYTES = 20_000_000
RSS_BUDGET_BYTES = 600_000_000  # docs/security.md, "Memory"


def rss(pid: int, field: str = "VmHWM") -> int:
    """The process's resident set size in bytes: ``VmHWM`` (its high-water mark) or
    ``VmRSS`` (now), from Linux's ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/<pid>/status")


@ABANDONED_REQUEST_BODY  # the refused uploads' bodies are left unsent
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
async def test_concurrent_large_uploads_stay_within_the_memory_budget(start_triaged, tmp_path):
    password_file = tmp_path / "initial-admin-password"
    triaged = start_triaged(
        "api",
        TRIAGED_INITIAL_ADMIN_PASSWORD_FILE=str(password_file),
        TRIAGED_LOG_LEVEL="WARNING",
    )
    await triaged.wait_ready()
    key = await analyst_key(triaged.url, password_file)
    headers = {"Authorization": f"Bearer {key}"}
    before = rss(triaged.proc.pid)
    answers: dict[int, httpx.Response] = {}

    async def upload(index: int, client: httpx.AsyncClient) -> None:
        content = f"upload {index}\n".encode().ljust(UPLOAD_BYTES, b"x")
        answers[index] = await client.post(
            "/api/v1/documents",
            files={"file": (f"big-{index}.txt", content, "text/plain")},
            headers=headers,
        )

    limits = httpx.Limits(max_connections=UPLOADS)
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=triaged.url, timeout=50, limits=limits) as client:
            async with trio.open_nursery() as nursery:
                for index in range(UPLOADS):
                    nursery.start_soon(upload, index, client)
            peak = rss(triaged.proc.pid)
            accepted = {i: r for i, r in answers.items() if r.status_code == 202}
            refused = {i: r for i, r in answers.items() if r.status_code != 202}
            for index, response in refused.items():
                assert response.status_code == 503, (index, response.text)
                assert int(response.headers["retry-after"]) > 0
                assert response.headers["content-type"] == "application/problem+json"
            for index, response in accepted.items():
                shown = await client.get(response.headers["location"], headers=headers)
                assert shown.status_code == 200, shown.text
                assert shown.json()["size_bytes"] == UPLOAD_BYTES
                assert shown.json()["filename"] == f"big-{index}.txt"
        await trio.sleep(1)
        after = rss(triaged.proc.pid, "VmRSS")
    report = (
        f"{len(accepted)} accepted, {len(refused)} refused with 503; peak RSS "
        f"{peak / 1e6:.0f} MB (at start {before / 1e6:.0f} MB, after {after / 1e6:.0f} MB)"
    )
    print(report)
    assert len(accepted) >= 4, report
    assert peak <= RSS_BUDGET_BYTES, report
