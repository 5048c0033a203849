"""Directory sources on real directories and real PostgreSQL: settled files become
documents once, are moved to ``processed/`` (or remembered), a crash between the commit
and the move creates no duplicate, and nothing outside the allowed roots is read."""

from __future__ import annotations

import os
import time

import pytest

from daemon.modules.audit import AuditContext
from daemon.modules.ingestion import FetchPolicy
from daemon.modules.sources import (
    POLLERS,
    SourcePolicy,
    SourcesConfig,
    check_source_input,
    create_source,
    run_poll,
)
from daemon.shared.errors import ValidationFailed

SYSTEM = AuditContext.system()


def config_for(root) -> SourcesConfig:
    return SourcesConfig(
        policy=SourcePolicy(directory_roots=(str(root),)),
        fetch=FetchPolicy(),
        max_document_bytes=1 << 20,
        max_attempts=3,
    )


def write(path, data: bytes, *, age: float = 60.0) -> None:
    path.write_bytes(data)
    then = time.time() - age
    os.utime(path, (then, then))


async def directory_source(pool, config, path, **extra):
    body = {"name": f"dir {path.name}", "kind": "directory",
            "config": {"path": str(path), "settle_seconds": 2, **extra},
            "schedule": {"interval_seconds": 60}}  # fmt: skip
    return await create_source(pool, check_source_input(body, config.policy), context=SYSTEM)


async def documents_of(pool, source_id):
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        rows = await (
            await conn.execute(
                "SELECT d.title, d.media_type, c.data FROM documents d"
                " JOIN document_blobs c ON c.document_id = d.id"
                " WHERE d.source_id = %s ORDER BY d.title",
                [source_id],
            )
        ).fetchall()
    return [(title, media_type, bytes(data)) for title, media_type, data in rows]


async def test_settled_files_become_documents_once_and_move_to_processed(pool, tmp_path):
    root = tmp_path / "root"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    config = config_for(root)
    source = await directory_source(pool, config, inbox, exclude=["*.part"])
    write(inbox / "a.txt", b"alpha")
    write(inbox / "b.json", b'{"b": 1}')
    write(inbox / "c.part", b"excluded by glob")
    write(inbox / "d.txt", b"still being written", age=0)  # mtime now: not settled
    (tmp_path / "secret.txt").write_bytes(b"outside the root")
    (inbox / "link.txt").symlink_to(tmp_path / "secret.txt")

    first = await run_poll(pool, config, source.id, trigger="manual")
    assert first.error is None and first.documents_created == 2
    assert await documents_of(pool, source.id) == [
        ("a.txt", "text/plain", b"alpha"),
        ("b.json", "application/json", b'{"b": 1}'),
    ]
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["a.txt", "b.json"]
    assert sorted(p.name for p in inbox.iterdir()) == ["c.part", "d.txt", "link.txt", "processed"]

    os.utime(inbox / "d.txt", (time.time() - 60, time.time() - 60))  # the writer is done
    second = await run_poll(pool, config, source.id, trigger="manual")
    assert second.documents_created == 1
    third = await run_poll(pool, config, source.id, trigger="manual")
    assert third.documents_created == 0
    titles = [title for title, _, _ in await documents_of(pool, source.id)]
    assert titles == ["a.txt", "b.json", "d.txt"]
    assert (tmp_path / "secret.txt").exists()  # never read, never moved


async def test_a_crash_between_commit_and_move_creates_no_duplicate(pool, tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = config_for(tmp_path)
    source = await directory_source(pool, config, inbox)
    for n in range(40):
        write(inbox / f"f{n:02}.txt", f"file {n}".encode())
    real = POLLERS["directory"]

    class KilledBeforeMoving(real):
        async def after_commit(self, outcome):
            return None  # the process died right after the commit

    monkeypatch.setitem(POLLERS, "directory", KilledBeforeMoving)
    crashed = await run_poll(pool, config, source.id, trigger="manual")
    assert crashed.documents_created == 40
    assert not (inbox / "processed").exists()

    monkeypatch.setitem(POLLERS, "directory", real)
    retried = await run_poll(pool, config, source.id, trigger="manual")
    assert retried.documents_created == 0 and retried.items_seen == 40
    assert len(list((inbox / "processed").iterdir())) == 40
    assert [p.name for p in inbox.iterdir()] == ["processed"]
    assert len(await documents_of(pool, source.id)) == 40


async def test_remember_mode_leaves_files_and_takes_a_changed_file_again(pool, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = config_for(tmp_path)
    source = await directory_source(pool, config, inbox, after="remember")
    write(inbox / "report.txt", b"version 1")
    assert (await run_poll(pool, config, source.id, trigger="manual")).documents_created == 1
    assert (await run_poll(pool, config, source.id, trigger="manual")).documents_created == 0
    assert (inbox / "report.txt").exists()
    write(inbox / "report.txt", b"version 2", age=30)
    assert (await run_poll(pool, config, source.id, trigger="manual")).documents_created == 1
    assert [data for _, _, data in await documents_of(pool, source.id)] == [
        b"version 1",
        b"version 2",
    ]


async def test_a_directory_outside_the_roots_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    policy = SourcePolicy(directory_roots=(str(root),))
    for path in (str(tmp_path / "elsewhere"), str(root / ".." / "elsewhere"), "relative"):
        body = {"name": "x", "kind": "directory", "config": {"path": path},
                "schedule": {"interval_seconds": 60}}  # fmt: skip
        with pytest.raises(ValidationFailed) as refused:
            check_source_input(body, policy)
        assert refused.value.errors[0]["field"] == "config.path"


async def test_a_watched_directory_swapped_for_a_link_outside_fails_the_poll(pool, tmp_path):
    root = tmp_path / "root"
    (root / "inbox").mkdir(parents=True)
    config = config_for(root)
    source = await directory_source(pool, config, root / "inbox")
    (root / "inbox").rmdir()
    (tmp_path / "outside").mkdir()
    write(tmp_path / "outside" / "x.txt", b"must not be read")
    (root / "inbox").symlink_to(tmp_path / "outside")
    result = await run_poll(pool, config, source.id, trigger="manual")
    assert result.documents_created == 0
    assert result.error is not None and "not under an allowed directory root" in result.error
    assert (tmp_path / "outside" / "x.txt").exists()


async def test_the_api_refuses_directories_outside_the_roots_with_422(pool, tmp_path):
    from daemon.modules.auth import Role
    from tests.integration.api_server import bearer, serve_api

    root = tmp_path / "root"
    (root / "inbox").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "escape").symlink_to(tmp_path / "outside")
    async with serve_api(pool, source_directory_roots=str(root)) as api:
        admin = bearer(await api.token(Role.ADMIN))
        async with api.client(headers=admin) as client:

            def body(path):
                return {"name": f"d {path}", "kind": "directory", "config": {"path": path},
                        "schedule": {"interval_seconds": 60}}  # fmt: skip

            for path in (str(tmp_path / "outside"), str(root / "escape"), str(root / "..")):
                refused = await client.post("/api/v1/sources", json=body(path))
                assert refused.status_code == 422, (path, refused.text)
                assert refused.json()["errors"][0]["field"] == "config.path"
            created = await client.post("/api/v1/sources", json=body(str(root / "inbox")))
            assert created.status_code == 201, created.text
            source_id = created.json()["id"]
            moved = await client.patch(
                f"/api/v1/sources/{source_id}", json={"config": {"path": str(root / "escape")}}
            )
            assert moved.status_code == 422, moved.text
            assert moved.json()["errors"][0]["field"] == "config.path"
