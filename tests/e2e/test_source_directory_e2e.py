"""A watched directory through the real ``triaged serve``, SIGKILLed in the middle of a
poll: 200 files (20 of them written slowly, chunk by chunk over seconds) end as exactly
200 documents, each once and whole, and every file ends in ``processed/``.

The kill lands inside a poll deterministically: the quick files are prepared aside (their
size and mtime, hence their identities, known) and the test holds, uncommitted, the
``source_items`` row of the 41st before moving them all into the watched directory, so
the poll's claim of the batch holding it waits on it (in the second batch of 32, after
the first was committed and moved). Once PostgreSQL shows the daemon's statement
waiting, the daemon is SIGKILLed and the row rolled back. A restarted daemon finishes the
work: the killed poll's job comes back when its lease ends, and the schedule keeps
polling.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import pytest
import trio

from daemon.shared.db import open_pool
from daemon.shared.db.psycopg_trio import TrioConnection
from tests.e2e.process import analyst_key

pytestmark = pytest.mark.e2e

QUICK, SLOW, CHUNKS = 180, 20, 10
BLOCKED = (
    "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database()"
    " AND %s = ANY(pg_blocking_pids(pid))"
)


async def write_slowly(path, chunks: list[bytes]) -> None:
    """Append one chunk every 0.4 s: the file's mtime keeps moving for 4 s."""
    async with await trio.open_file(path, "wb") as stream:
        for chunk in chunks:
            await stream.write(chunk)
            await stream.flush()
            await trio.sleep(0.4)


async def test_200_files_with_slow_writers_and_a_sigkill_mid_poll(
    start_triaged, database_url, tmp_path
):
    root = tmp_path / "drop"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    staging = root / "staging"
    staging.mkdir()
    run = uuid.uuid4().hex
    expected: dict[str, bytes] = {}
    old = time.time() - 60
    for n in range(QUICK):
        name = f"file-{n:03}.txt"
        expected[name] = f"quick file {n} of run {run}\n".encode() * 20
        (staging / name).write_bytes(expected[name])
        os.utime(staging / name, (old, old))
    slow_chunks = {
        f"slow-{n:02}.txt": [f"slow file {n} chunk {c} of {run}\n".encode() * 50
                             for c in range(CHUNKS)]
        for n in range(SLOW)
    }  # fmt: skip
    expected.update({name: b"".join(chunks) for name, chunks in slow_chunks.items()})

    password_file = tmp_path / "initial-admin-password"
    env = {
        "TRIAGED_SOURCE_DIRECTORY_ROOTS": str(root),
        "TRIAGED_INITIAL_ADMIN_PASSWORD_FILE": str(password_file),
        "TRIAGED_QUEUE_LEASE_SECONDS": "2",
        "TRIAGED_QUEUE_RESCUE_INTERVAL_SECONDS": "0.25",
        "TRIAGED_AUTH_HASH_TIME_COST": "1",
        "TRIAGED_AUTH_HASH_MEMORY_KIB": "8192",
        "TRIAGED_AUTH_HASH_PARALLELISM": "1",
        "TRIAGED_LOG_LEVEL": "WARNING",
    }
    first = start_triaged("serve", **env)
    await first.wait_ready(60)
    admin = {"Authorization": f"Bearer {await analyst_key(first.url, password_file, 'admin')}"}
    async with httpx.AsyncClient(base_url=first.url, headers=admin, timeout=30) as client:
        created = await client.post(
            "/api/v1/sources",
            json={"name": "drop", "kind": "directory",
                  "config": {"path": str(inbox), "settle_seconds": 1},
                  "schedule": {"interval_seconds": 1}, "limits": {"items_per_poll": 1000}},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        source_id = created.json()["id"]

    # The 41st file (in the second batch of 32) is held by the test, uncommitted.
    held = staging / "file-040.txt"
    info = held.stat()
    holder = await TrioConnection.connect(database_url)
    async with open_pool(database_url, max_size=2) as pool:

        async def count() -> int:
            async with pool.connection() as conn:
                await conn.set_autocommit(True)
                row = await (
                    await conn.execute(
                        "SELECT count(*) FROM documents WHERE source_id = %s", (source_id,)
                    )
                ).fetchone()
            return int(row[0])

        try:
            await holder.execute(
                "INSERT INTO source_items (source_id, identity) VALUES (%s, %s)",
                (source_id, f"{held.name}|{info.st_size}|{info.st_mtime_ns}"),
            )
            for name in sorted(os.listdir(staging)):
                os.rename(staging / name, inbox / name)  # size and mtime kept
            async with trio.open_nursery() as writers:
                for name, chunks in slow_chunks.items():
                    writers.start_soon(write_slowly, inbox / name, chunks)
                with trio.fail_after(45):
                    while True:
                        assert first.proc.poll() is None, first.output()
                        async with pool.connection() as conn:
                            await conn.set_autocommit(True)
                            rows = await (
                                await conn.execute(BLOCKED, (holder.pgconn.backend_pid,))
                            ).fetchall()
                        if any("INSERT INTO source_items" in query for _, query in rows):
                            break
                        await trio.sleep(0.05)
                first.signal(signal.SIGKILL)
                assert await first.wait_exit(timeout=20) == -signal.SIGKILL
                at_kill = await count()
        finally:
            await holder.rollback()
            await holder.close()
        # Batches before the held one were committed; the held one died with the process.
        assert 0 < at_kill < QUICK, at_kill
        async with pool.connection() as conn:
            await conn.set_autocommit(True)
            unfinished = await (
                await conn.execute(
                    "SELECT count(*) FROM source_polls WHERE source_id = %s"
                    " AND finished_at IS NULL",
                    (source_id,),
                )
            ).fetchone()
        assert unfinished[0] >= 1  # the killed poll never finished

        second = start_triaged("serve", **env)
        await second.wait_ready(60)
        with trio.fail_after(60):
            while await count() < len(expected) or os.listdir(inbox) != ["processed"]:
                assert second.proc.poll() is None, second.output()
                await trio.sleep(0.2)
        await trio.sleep(2.5)  # two more polls: nothing more may appear
        async with pool.connection() as conn:
            await conn.set_autocommit(True)
            rows = await (
                await conn.execute(
                    "SELECT d.title, d.external_id, b.data FROM documents d"
                    " JOIN document_blobs b ON b.document_id = d.id"
                    " WHERE d.source_id = %s",
                    (source_id,),
                )
            ).fetchall()
    second.signal(signal.SIGTERM)
    assert await second.wait_exit(timeout=30) == 0, second.output()[-3000:]

    titles = sorted(title for title, _, _ in rows)
    assert titles == sorted(expected)  # exactly 200 documents, each file once
    assert len({external_id for _, external_id, _ in rows}) == len(expected)
    assert {title: bytes(data) for title, _, data in rows} == expected  # whole, not partial
    assert sorted(os.listdir(inbox / "processed")) == sorted(expected)
