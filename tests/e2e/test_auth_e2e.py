"""Authentication against the real ``triaged serve`` process, with the default argon2
parameters: the first admin of a fresh install, equal timing of failed logins, the event
loop staying responsive while passwords hash, and no secret in the process's log."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest
import trio

from daemon.modules.auth.passwords import hasher
from daemon.shared.config import Settings
from tests.e2e.process import client_gc_paused

pytestmark = pytest.mark.e2e

# Failures must not lock anyone out in the timing tests: throttling is tested elsewhere.
NO_THROTTLE = {
    "TRIAGED_AUTH_ACCOUNT_FREE_FAILURES": "1000",
    "TRIAGED_AUTH_ACCOUNT_LOCK_FAILURES": "1000",
    "TRIAGED_AUTH_ADDRESS_FREE_FAILURES": "100000",
    "TRIAGED_AUTH_ADDRESS_LOCK_FAILURES": "100000",
}


async def first_admin(proc) -> tuple[str, str]:
    """Log in as the generated first admin; (password, token)."""
    password = (proc.data_dir / "initial-admin-password").read_text().strip()
    async with httpx.AsyncClient(base_url=proc.url, timeout=30) as client:
        response = await client.post(
            "/api/v1/auth/login",
            json={"email": "admin@triaged.localhost", "password": password},
        )
    assert response.status_code == 200, response.text
    return password, response.json()["token"]


@pytest.fixture
def serve(start_triaged, tmp_path):
    async def start(**env: str):
        data_dir = tmp_path / "data"
        proc = start_triaged(
            "serve",
            TRIAGED_INITIAL_ADMIN_PASSWORD_FILE=str(data_dir / "initial-admin-password"),
            **env,
        )
        proc.data_dir = data_dir
        await proc.wait_ready()
        return proc

    return start


async def test_fresh_install_has_a_usable_admin_and_no_secret_in_the_log(serve):
    proc = await serve()
    password, token = await first_admin(proc)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=proc.url, timeout=30, headers=headers) as client:
        me = await client.get("/api/v1/auth/me")
        assert me.json()["user"]["role"] == "admin"
        key = (await client.post("/api/v1/api-keys", json={"name": "e2e", "role": "viewer"})).json()
        assert (
            await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {key['key']}"})
        ).status_code == 200
        new_password = "the admin's own passphrase"
        changed = await client.post(
            "/api/v1/auth/password",
            json={"current_password": password, "new_password": new_password},
        )
        assert changed.status_code == 200
    output = proc.output()
    assert "initial-admin-password" in output and "admin@triaged.localhost" in output
    ready = [r.get("action") for r in proc.log_records()]
    # The start ends with how to log in (the last thing a first `make run` shows).
    assert ready.index("auth.first_login") > ready.index("supervisor.ready")
    for secret in (password, token, key["key"], new_password):
        assert secret not in output


async def test_failed_logins_take_the_same_time_and_say_the_same(serve):
    proc = await serve(**NO_THROTTLE)
    await first_admin(proc)  # the known account
    headers = {"X-Request-ID": "timing"}
    unknown = {"email": "nobody@triaged.localhost", "password": "some wrong password"}
    wrong = {"email": "admin@triaged.localhost", "password": "some wrong password"}
    times: dict[str, list[float]] = {"unknown": [], "wrong": []}
    bodies: dict[str, set[bytes]] = {"unknown": set(), "wrong": set()}
    async with httpx.AsyncClient(base_url=proc.url, timeout=30, headers=headers) as client:
        for body in (unknown, wrong):  # warm-up: connections, prepared statements
            await client.post("/api/v1/auth/login", json=body)
        for _ in range(50):  # interleaved, so drift in the machine's load hits both alike
            for name, body in (("unknown", unknown), ("wrong", wrong)):
                started = time.perf_counter()
                response = await client.post("/api/v1/auth/login", json=body)
                times[name].append(time.perf_counter() - started)
                assert response.status_code == 401
                bodies[name].add(response.content)
    assert bodies["unknown"] == bodies["wrong"] and len(bodies["wrong"]) == 1
    median_unknown = statistics.median(times["unknown"])
    median_wrong = statistics.median(times["wrong"])
    ratio = max(median_unknown, median_wrong) / min(median_unknown, median_wrong)
    print(
        f"\nlogin failure medians: unknown {median_unknown * 1000:.1f} ms, "
        f"wrong password {median_wrong * 1000:.1f} ms, ratio {ratio:.3f}"
    )
    assert ratio < 1.2


async def test_hashing_never_stalls_the_event_loop(serve):
    proc = await serve(**NO_THROTTLE)
    password, _ = await first_admin(proc)
    latencies: list[float] = []
    done = trio.Event()

    async def poll_livez(client):
        while not done.is_set():
            started = time.perf_counter()
            response = await client.get("/livez")
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
            await trio.sleep(0.01)

    async def log_in(client):
        response = await client.post(
            "/api/v1/auth/login",
            json={"email": "admin@triaged.localhost", "password": password},
        )
        assert response.status_code == 200

    # One hash with the daemon's parameters, timed here while the logins run: under the
    # same load, this is what one login's hash would stall the daemon's loop for if it
    # ran there. The bound is relative to it (a loaded machine slows both alike), with a
    # 50 ms floor.
    fields = Settings.model_fields
    reference = hasher(
        fields["auth_hash_time_cost"].default,
        fields["auth_hash_memory_kib"].default,
        fields["auth_hash_parallelism"].default,
    )
    hash_seconds: list[float] = []

    def time_one_hash() -> None:
        started = time.perf_counter()
        reference.hash("a password of some length")
        hash_seconds.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=50)
    async with (
        httpx.AsyncClient(base_url=proc.url, timeout=60, limits=limits) as logins,
        httpx.AsyncClient(base_url=proc.url, timeout=60) as probe,
    ):
        await probe.get("/livez")
        with client_gc_paused():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll_livez, probe)
                started = time.perf_counter()
                async with trio.open_nursery() as batch:
                    for _ in range(20):
                        batch.start_soon(log_in, logins)
                    batch.start_soon(trio.to_thread.run_sync, time_one_hash)
                elapsed = time.perf_counter() - started
                done.set()
    worst = max(latencies)
    one_hash = hash_seconds[0]
    print(
        f"\n20 concurrent logins in {elapsed:.2f} s; {len(latencies)} /livez probes, "
        f"median {statistics.median(latencies) * 1000:.1f} ms, slowest {worst * 1000:.1f} ms; "
        f"one hash under the same load {one_hash * 1000:.1f} ms"
    )
    assert len(latencies) >= 10
    assert worst < max(0.050, 0.5 * one_hash)
