"""The real process: configuration errors, commands, readiness, database outages, memory."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
import trio

from daemon.shared.db import embedded, migrate
from tests.e2e.process import ROOT, Triaged, base_env, free_port

pytestmark = pytest.mark.e2e


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bad_port_exits_2_with_one_line_naming_the_field():
    result = run_cli("serve", env=base_env(TRIAGED_HTTP_PORT="abc"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "TRIAGED_HTTP_PORT" in lines[0]


def test_config_check_prints_effective_values_with_the_password_masked():
    env = base_env(
        TRIAGED_DATABASE_URL="postgresql://app:topsecret@db.example:5432/t",
        TRIAGED_WORKER_CONCURRENCY="7",
    )
    result = run_cli("config", "check", env=env)
    assert result.returncode == 0, result.stderr
    assert "TRIAGED_WORKER_CONCURRENCY=7" in result.stdout
    assert "postgresql://app:***@db.example:5432/t" in result.stdout
    assert "topsecret" not in result.stdout + result.stderr


def test_two_migrate_commands_at_once_apply_each_migration_once(database_url, tmp_path):
    env = base_env(TRIAGED_DATABASE_URL=database_url, TRIAGED_DATA_DIR=str(tmp_path))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "daemon", "migrate"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    applied = sorted(out.split()[1] for out, _err in outputs)
    assert applied == ["0", str(len(migrate.discover()))]
    with psycopg.connect(database_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert sorted(versions) == [m.version for m in migrate.discover()]
    status = run_cli("migrate", "--status", env=env)
    assert status.returncode == 0
    assert all(" applied " in line for line in status.stdout.strip().splitlines())


async def test_readyz_follows_the_database_and_livez_does_not(tmp_path):
    server = embedded.start(tmp_path / "own-db")
    env = base_env(
        TRIAGED_DATABASE_URL=server.url,
        TRIAGED_HTTP_PORT=str(free_port()),
        TRIAGED_DATA_DIR=str(tmp_path / "data"),
    )
    triaged = Triaged(tmp_path, args=["serve"], env=env)
    try:
        await triaged.wait_ready()
        async with httpx.AsyncClient(base_url=triaged.url, timeout=5) as client:
            await trio.to_thread.run_sync(embedded.stop, server)
            assert await _status_becomes(client, "/readyz", 503, within=10)
            body = (await client.get("/readyz")).json()
            assert body["checks"]["database"].startswith(("unavailable", "no answer"))
            assert (await client.get("/livez")).status_code == 200
            assert triaged.proc.poll() is None
            await trio.to_thread.run_sync(embedded.start, tmp_path / "own-db")
            assert await _status_becomes(client, "/readyz", 200, within=15)
        triaged.signal(signal.SIGTERM)
        assert await triaged.wait_exit(timeout=10) == 0
    finally:
        triaged.kill()
        embedded.stop(server)


async def _status_becomes(client: httpx.AsyncClient, path: str, status: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if (await client.get(path)).status_code == status:
                return True
        except httpx.TransportError:
            pass
        await trio.sleep(0.1)
    return False


async def test_api_and_worker_roles_run_their_groups(start_triaged):
    api = start_triaged("api")
    await api.wait_ready()
    worker = start_triaged("worker")
    deadline = time.monotonic() + 30
    while not any(r.get("action") == "supervisor.ready" for r in worker.log_records()):
        assert time.monotonic() < deadline and worker.proc.poll() is None, worker.output()
        await trio.sleep(0.05)
    ready = {
        r["action"]: r
        for r in api.log_records() + worker.log_records()
        if r.get("action") == "supervisor.ready"
    }
    groups = sorted(
        tuple(r["groups"])
        for r in api.log_records() + worker.log_records()
        if r.get("action") == "supervisor.ready"
    )
    assert ready and groups == [("http",), ("poller", "scheduler")]
    for process in (api, worker):
        process.signal(signal.SIGTERM)
        assert await process.wait_exit(timeout=10) == 0


async def test_access_log_lines_carry_method_path_status_and_request_id(start_triaged):
    triaged = start_triaged("serve")
    await triaged.wait_ready()
    async with httpx.AsyncClient(base_url=triaged.url) as client:
        await client.get("/livez", headers={"X-Request-ID": "trace-42"})
        await client.get("/missing")
    triaged.signal(signal.SIGTERM)
    assert await triaged.wait_exit(timeout=10) == 0
    access = [r for r in triaged.log_records() if r.get("action") == "http.request"]
    livez = next(r for r in access if r["path"] == "/livez" and r.get("request_id") == "trace-42")
    assert livez["method"] == "GET" and livez["status"] == 200 and livez["duration_ms"] >= 0
    assert any(r["path"] == "/missing" and r["status"] == 404 for r in access)


async def test_embedded_database_by_default_ready_within_30s_and_stopped_on_exit(tmp_path):
    data_dir = tmp_path / "state"
    env = base_env(TRIAGED_HTTP_PORT=str(free_port()), TRIAGED_DATA_DIR=str(data_dir))
    triaged = Triaged(tmp_path, args=["serve"], env=env)
    try:
        seconds = await triaged.wait_ready(timeout=30)
        assert seconds < 30
        rss_mb = _rss_mb(triaged.proc.pid)
        print(f"embedded start: ready after {seconds:.2f}s, idle RSS {rss_mb:.1f} MB")
        assert rss_mb < 90
        assert (data_dir / "postgres" / "postmaster.pid").exists()
        triaged.signal(signal.SIGINT)
        assert await triaged.wait_exit(timeout=15) == 0
        assert not (data_dir / "postgres" / "postmaster.pid").exists()
    finally:
        triaged.kill()
        embedded.stop(embedded.server_for(data_dir))  # left running only if the test failed


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_embedded_database_belongs_to_the_service_not_to_one_shot_commands(tmp_path):
    data_dir = tmp_path / "state"
    port = str(free_port())
    env = base_env(TRIAGED_HTTP_PORT=port, TRIAGED_DATA_DIR=str(data_dir))
    pidfile = data_dir / "postgres" / "postmaster.pid"
    first = Triaged(tmp_path, args=["serve"], env=env)
    try:
        await first.wait_ready()
        # A one-shot command beside the service uses its cluster and leaves it running.
        listed = run_cli("jobs", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        async with httpx.AsyncClient(base_url=first.url) as client:
            assert (await client.get("/readyz")).status_code == 200
        # A killed service leaves its cluster running; the next one takes it over...
        first.kill()
        assert pidfile.exists()
        second = Triaged(tmp_path, args=["serve"], env=env)
        try:
            await second.wait_ready()
            second.signal(signal.SIGTERM)
            assert await second.wait_exit(timeout=15) == 0
        finally:
            second.kill()
        # ...and stops it on exit.
        assert not pidfile.exists()
    finally:
        first.kill()
        embedded.stop(embedded.server_for(data_dir))


async def test_first_start_creates_the_bootstrap_admin_once(start_triaged, database_url):
    secret = "correct horse battery staple"
    admin = {
        "TRIAGED_BOOTSTRAP_ADMIN_EMAIL": "Root@Example.org",
        "TRIAGED_BOOTSTRAP_ADMIN_PASSWORD": secret,
    }
    first = start_triaged("serve", **admin)
    second = start_triaged("worker", **admin)
    await first.wait_ready()
    deadline = time.monotonic() + 30
    while not any(r.get("action") == "supervisor.ready" for r in second.log_records()):
        assert time.monotonic() < deadline and second.proc.poll() is None, second.output()
        await trio.sleep(0.05)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT lower(email), role::text FROM users").fetchall()
    assert rows == [("root@example.org", "admin")]
    for process in (first, second):
        process.signal(signal.SIGTERM)
        assert await process.wait_exit(timeout=10) == 0
        assert secret not in process.output()


async def test_a_weak_bootstrap_password_is_a_configuration_error(start_triaged):
    triaged = start_triaged(
        "serve",
        TRIAGED_BOOTSTRAP_ADMIN_EMAIL="root@example.org",
        TRIAGED_BOOTSTRAP_ADMIN_PASSWORD="short",
    )
    assert await triaged.wait_exit(timeout=30) == 2
    assert "TRIAGED_BOOTSTRAP_ADMIN" in triaged.output()
    assert "short" not in triaged.output().replace("shorter", "")
