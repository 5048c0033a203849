"""The CSV export from the real ``triaged api`` process: its memory stays flat while a
file several times larger streams out, and SIGTERM cuts an export whose client stopped
reading at the HTTP grace deadline (the COPY stops, the process exits)."""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
import pytest
import trio

from tests.e2e.process import analyst_key

pytestmark = pytest.mark.e2e

ROWS = 200_000
RSS_GROWTH_LIMIT = 30 * 1024 * 1024  # the bound for 1,000,000 rows


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/<pid>/status")


def seed(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO documents (title, state, metadata)"
            " SELECT repeat('row ' || g || ' ', 30), 'completed', '{}'"
            f" FROM generate_series(1, {ROWS}) g"
        )


async def request(port: int, key: str, path: str) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        f"GET {path} HTTP/1.1\r\nHost: e2e\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    )
    return stream


def copy_running(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND state <> 'idle'"
            " AND query LIKE 'COPY (SELECT%%'"
        ).fetchone()
    return int(row[0])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
async def test_export_memory_is_flat_and_sigterm_cuts_a_stalled_export(
    start_triaged, database_url, tmp_path
):
    password_file = tmp_path / "initial-admin-password"
    triaged = start_triaged(
        "api",
        TRIAGED_INITIAL_ADMIN_PASSWORD_FILE=str(password_file),
        TRIAGED_LOG_LEVEL="WARNING",
        TRIAGED_HTTP_GRACE_SECONDS="2",
    )
    await triaged.wait_ready()
    key = await analyst_key(triaged.url, password_file, role="viewer")
    await trio.to_thread.run_sync(seed, database_url)
    pid = triaged.proc.pid

    # The whole export, read as fast as the client can, RSS sampled all along.
    before = rss(pid)
    peak = before
    stream = await request(triaged.port, key, "/api/v1/exports/documents.csv")
    size = 0
    tail = b""
    with trio.fail_after(60):
        while data := await stream.receive_some(1 << 20):
            size += len(data)
            tail = (tail + data)[-16:]
            peak = max(peak, rss(pid))
            if tail.endswith(b"\r\n0\r\n\r\n"):
                break
    await stream.aclose()
    assert tail.endswith(b"\r\n0\r\n\r\n")  # complete: chunked encoding's last chunk
    assert size > 2 * RSS_GROWTH_LIMIT  # more than twice the bound: it cannot all be held
    assert peak - before < RSS_GROWTH_LIMIT, (before, peak)

    # A client that stops reading: the export waits for it (the COPY stays open) ...
    stalled = await request(triaged.port, key, "/api/v1/exports/documents.csv")
    assert (await stalled.receive_some(65536)).startswith(b"HTTP/1.1 200")
    await trio.sleep(1)
    assert await trio.to_thread.run_sync(copy_running, database_url) == 1
    # ... until SIGTERM's grace deadline cuts it: the process exits, the COPY is gone.
    triaged.signal(signal.SIGTERM)
    status = await triaged.wait_exit(timeout=20)
    assert status == 1, triaged.output()  # 1: the grace deadline cut off a request
    await stalled.aclose()
    with trio.fail_after(10):
        while await trio.to_thread.run_sync(copy_running, database_url):
            await trio.sleep(0.1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT details FROM audit_events WHERE action = 'export.documents' ORDER BY id"
        ).fetchall()
    assert [r[0]["complete"] for r in rows] == [True, False]
    assert rows[0][0]["rows"] == ROWS
    with psycopg.connect(database_url, autocommit=True) as conn:
        started = conn.execute(
            "SELECT details->>'kind' FROM audit_events WHERE action = 'export.started'"
        ).fetchall()
    assert started == [("documents",), ("documents",)]  # each audited before its first byte
