"""The CPU worker processes of ``triaged serve`` (docs/adr/0006) end with it: after a
drain (SIGTERM), and when the daemon is killed outright (SIGKILL) and cannot clean up."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e.process import Triaged, analyst_key

pytestmark = pytest.mark.e2e


def children(pid: int) -> list[int]:
    """Live (not zombie) child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        state, parent = fields[0], int(fields[1])
        if parent == pid and state != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def with_workers(server: Triaged, tmp_path: Path) -> list[int]:
    """Ingest one document (its steps start the worker processes); their pids."""
    await server.wait_ready(timeout=60)
    key = await analyst_key(server.url, tmp_path / "initial-admin-password")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        created = await client.post(
            "/api/v1/documents",
            json={"title": "outage", "content": "The datacenter is down: outage."},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert created.status_code == 202, created.text
        url = f"/api/v1/documents/{created.json()['id']}"
        deadline = time.monotonic() + 60
        while True:
            state = (await client.get(url, headers={"Authorization": f"Bearer {key}"})).json()
            if state["state"] == "completed":
                break
            assert time.monotonic() < deadline, f"not completed: {state}"
            await trio.sleep(0.1)
    workers = children(server.proc.pid)
    assert workers, "no worker process was started for the steps"
    return workers


async def wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return []
        await trio.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def serve(start_triaged, tmp_path: Path) -> Triaged:
    password_file = str(tmp_path / "initial-admin-password")
    return start_triaged("serve", TRIAGED_INITIAL_ADMIN_PASSWORD_FILE=password_file)


async def test_workers_end_with_the_drain(start_triaged, tmp_path):
    server = serve(start_triaged, tmp_path)
    workers = await with_workers(server, tmp_path)
    server.signal(signal.SIGTERM)
    assert await server.wait_exit(timeout=60) == 0
    assert await wait_gone(workers, 10) == []


async def test_workers_exit_when_the_daemon_is_killed(start_triaged, tmp_path):
    server = serve(start_triaged, tmp_path)
    workers = await with_workers(server, tmp_path)
    for pid in workers:  # a group-wide signal (Ctrl-C, systemd's stop) does not end them
        os.kill(pid, signal.SIGTERM)
    await trio.sleep(0.5)
    assert all(alive(pid) for pid in workers)
    server.proc.kill()
    server.proc.wait(10)
    # their pipes close with the daemon: each exits on its own, nothing is orphaned
    assert await wait_gone(workers, 10) == []
