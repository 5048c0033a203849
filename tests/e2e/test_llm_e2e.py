"""The ``openai`` analyzer in the real ``triaged serve``, against the OpenAI-compatible
test server (``tests/llm_server.py``, real HTTP on loopback): a faulty model, a model
server that goes away for a minute, and a slow one under load."""

from __future__ import annotations

import os
import re
import statistics
import time

import httpx
import pytest
import trio

from daemon.modules.analysis import DEFAULT_TAXONOMY
from daemon.shared.db import open_pool
from tests.e2e.process import analyst_key, client_gc_paused
from tests.llm_server import serve_llm

pytestmark = pytest.mark.e2e

SEVERITIES = {"low", "medium", "high", "critical"}
TEXTS = [
    "Ransomware breach on the file server, urgent: CVE-2024-3400. Contact soc@example.org.",
    "Outage: the checkout service is unreachable for all customers.",
    "Please refund invoice INV-2024 soon, we were overcharged.",
    "We received a subpoena about the lawsuit with ACME.",
    "A customer asks us to delete personal data under GDPR.",
    "Complaint: the support agent was rude on the phone.",
    "Feature request: please provide a dark mode.",
]
# 60 s as the issue asks; TRIAGED_TEST_LLM_DOWN_SECONDS shortens it for local runs.
DOWN_SECONDS = float(os.environ.get("TRIAGED_TEST_LLM_DOWN_SECONDS", "60"))


def llm_env(server, **extra: str) -> dict[str, str]:
    return {
        "TRIAGED_ANALYZER": "openai",
        "TRIAGED_LLM_BASE_URL": server.base_url,
        "TRIAGED_LLM_MODEL": server.model,
        "TRIAGED_LLM_API_KEY": "sk-test-secret-key",
        "TRIAGED_LLM_BREAKER_FAILURES": "5",
        "TRIAGED_LLM_BREAKER_PROBE_SECONDS": "1",
        "TRIAGED_QUEUE_LEASE_SECONDS": "5",
        "TRIAGED_LOG_LEVEL": "INFO",
        **extra,
    }


async def start(start_triaged, tmp_path, server, **extra: str):
    password_file = tmp_path / "data" / "initial-admin-password"
    proc = start_triaged(
        "serve", TRIAGED_INITIAL_ADMIN_PASSWORD_FILE=str(password_file), **llm_env(server, **extra)
    )
    await proc.wait_ready()
    return proc, await analyst_key(proc.url, password_file), password_file


async def post_documents(proc, key: str, count: int, first: int = 0) -> list[int]:
    """Post ``count`` different documents, numbered from ``first``."""
    ids = []
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(base_url=proc.url, headers=headers, limits=limits) as client:

        async def post(index: int) -> None:
            text = f"{TEXTS[index % len(TEXTS)]} Reference {index}."
            response = await client.post(
                "/api/v1/documents", json={"title": f"doc {index}", "content": text}
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

        async with trio.open_nursery() as nursery:
            for index in range(first, first + count):
                nursery.start_soon(post, index)
    return ids


async def states(pool) -> dict[str, int]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT state::text, count(*) FROM documents GROUP BY 1")
        ).fetchall()
    return dict(rows)


async def wait_terminal(pool, total: int, timeout: float) -> dict[str, int]:
    with trio.fail_after(timeout):
        while True:
            counts = await states(pool)
            if sum(counts.get(s, 0) for s in ("completed", "duplicate", "failed")) >= total:
                return counts
            await trio.sleep(0.2)


async def metric(url: str, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


async def test_a_faulty_model_still_analyses_every_document(start_triaged, tmp_path, database_url):
    async with serve_llm() as server:
        server.randomize({"malformed": 0.30, "rate_limited": 0.05, "error": 0.05}, seed=7)
        proc, key, _ = await start(
            start_triaged, tmp_path, server, TRIAGED_INGEST_CONCURRENCY="analyze=8"
        )
        await post_documents(proc, key, 300)
        async with open_pool(database_url, max_size=2) as pool:
            counts = await wait_terminal(pool, 300, timeout=240)
            async with pool.connection() as conn:
                analyses = await (
                    await conn.execute("SELECT category, severity, provider, model FROM analyses")
                ).fetchall()
                attempts = await (
                    await conn.execute(
                        "SELECT coalesce(sum(attempts - 1), 0), count(*) FROM jobs"
                        " WHERE queue = 'ingest.analyze'"
                    )
                ).fetchone()
                kept = await (
                    await conn.execute(
                        "SELECT count(*) FROM document_events WHERE detail ? 'invalid_output'"
                    )
                ).fetchone()
        calls = len(server.chat_calls)
        answered = [c.answered for c in server.chat_calls]
        invalid = await metric(proc.url, "triaged_llm_invalid_outputs_total")
        reported_calls = await metric(proc.url, "triaged_llm_calls_total")
    print(
        f"\n300 documents: {counts}; {calls} model calls ({calls / 300:.2f} per document; "
        f"{answered.count('malformed')} malformed, {answered.count('rate_limited')} 429, "
        f"{answered.count('error')} 500); {int(invalid)} outputs invalid after repair"
    )
    assert counts == {"completed": 300}
    assert len(analyses) == 300
    assert all(c in DEFAULT_TAXONOMY.names and s in SEVERITIES for c, s, _, _ in analyses)
    assert {(p, m) for _, _, p, m in analyses} == {("openai", "test-model")}
    assert answered.count("rate_limited") > 0 and answered.count("error") > 0
    # Only outputs still invalid after their repair round spend an attempt; 429s and
    # 500s give theirs back.
    assert attempts == (int(invalid), 300)
    assert kept[0] == int(invalid), "each invalid answer is kept in its document's history"
    assert reported_calls == calls
    assert "sk-test-secret-key" not in proc.output()


async def test_model_server_down_for_a_minute(start_triaged, tmp_path, database_url):
    async with serve_llm() as server:
        proc, key, _ = await start(start_triaged, tmp_path, server)
        async with open_pool(database_url, max_size=2) as pool:
            first = await post_documents(proc, key, 40)
            await wait_terminal(pool, 40, timeout=60)
            await server.stop()
            down_at = time.time()
            second = await post_documents(proc, key, 60, first=40)
            async with httpx.AsyncClient() as client:
                await trio.sleep(min(5.0, DOWN_SECONDS / 2))
                ready = await client.get(f"{proc.url}/readyz")
                assert ready.status_code == 200
                assert ready.json()["checks"]["analyzer"].startswith("degraded")
                await trio.sleep(max(0.0, DOWN_SECONDS - (time.time() - down_at)))
                await server.start()
                back_at = time.time()
                counts = await wait_terminal(pool, 100, timeout=120)
                ready_after = await client.get(f"{proc.url}/readyz")
            async with pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT extract(epoch FROM min(created_at)) FROM analyses"
                        " WHERE document_id = ANY(%s)",
                        (second,),
                    )
                ).fetchone()
    resumed_after = float(row[0]) - back_at
    log = proc.log_records()
    actions = [r.get("action") for r in log]
    print(
        f"\nserver down {back_at - down_at:.1f} s; first analysis {resumed_after:.2f} s after "
        f"it came back; breaker opened {actions.count('llm.breaker_open')}x, closed "
        f"{actions.count('llm.breaker_closed')}x; {counts}"
    )
    assert len(first) == 40 and counts == {"completed": 100}
    assert "llm.breaker_open" in actions and "llm.breaker_closed" in actions
    assert actions.index("llm.breaker_open") < actions.index("llm.breaker_closed")
    assert resumed_after < 5.0
    assert ready_after.json()["checks"]["analyzer"] == "ok"


async def test_livez_stays_fast_with_50_slow_analyses_in_flight(
    start_triaged, tmp_path, database_url
):
    async with serve_llm(slow_delay=2.0) as server:
        server.randomize({"slow": 1.0}, seed=1)
        proc, key, _ = await start(
            start_triaged,
            tmp_path,
            server,
            TRIAGED_LLM_MAX_CONCURRENCY="50",
            TRIAGED_INGEST_CONCURRENCY="analyze=50",
            TRIAGED_DB_POOL_MAX_SIZE="20",
        )
        latencies: list[float] = []
        idle: list[float] = []

        async def probe_for(seconds: float, into: list[float]) -> None:
            deadline = time.monotonic() + seconds
            with client_gc_paused():
                while time.monotonic() < deadline:
                    started = time.perf_counter()
                    assert (await probe.get("/livez")).status_code == 200
                    into.append(time.perf_counter() - started)
                    await trio.sleep(0.01)

        async with httpx.AsyncClient(base_url=proc.url) as probe:
            await probe_for(1.0, idle)  # the same probe before: this machine's own noise
            await post_documents(proc, key, 50)
            with trio.fail_after(30):
                while server.in_flight < 50:
                    await trio.sleep(0.01)
            await probe_for(3.0, latencies)
        peak = server.max_in_flight
        async with open_pool(database_url, max_size=2) as pool:
            counts = await wait_terminal(pool, 50, timeout=60)
    latencies.sort()
    idle.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    idle_p99 = idle[int(len(idle) * 0.99) - 1]
    print(
        f"\n/livez with {peak} model calls in flight: {len(latencies)} probes, median "
        f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
        f"(idle p99 {idle_p99 * 1000:.1f} ms)"
    )
    assert peak >= 50 and counts == {"completed": 50}
    # A call that held the loop would stall a probe for the model's 2 s; the bound is
    # relative to the same probe's idle p99 on this machine, with a 50 ms floor.
    assert p99 < max(0.050, 4 * idle_p99)
