"""Migration 0010 on a database with documents from before it: their free-text source ids
become sources of kind ``upload`` (one per distinct id, named by it), documents without
one (or with an empty or blank one) belong to the built-in upload source, and
``documents.source_id`` is a foreign key."""

from __future__ import annotations

import psycopg
import pytest

from daemon.shared.db import migrate
from daemon.shared.db.pool import open_pool


async def test_free_text_source_ids_become_upload_sources(database_url):
    shipped = migrate.discover()
    before = [m for m in shipped if m.version < 10]
    async with open_pool(database_url) as pool:
        await migrate.apply(pool, before)
        async with pool.transaction() as conn:
            for title, source in [("a", "pager"), ("b", None), ("c", "pager"), ("d", "mail"),
                                  ("e", "upload"), ("f", ""), ("g", "  ")]:  # fmt: skip
                await conn.execute(
                    "INSERT INTO documents (title, source_id) VALUES (%s, %s)", [title, source]
                )
        await migrate.apply(pool, shipped)
        async with pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT d.title, s.name, s.kind, s.builtin FROM documents d"
                    " JOIN sources s ON s.id = d.source_id ORDER BY d.title"
                )
            ).fetchall()
            assert rows == [
                ("a", "pager", "upload", False),
                ("b", "upload", "upload", True),
                ("c", "pager", "upload", False),
                ("d", "mail", "upload", False),
                ("e", "upload", "upload", True),
                ("f", "upload", "upload", True),  # the old upload accepted "": no source name
                ("g", "upload", "upload", True),
            ]
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            async with pool.transaction() as conn:
                await conn.execute("INSERT INTO documents (title, source_id) VALUES ('x', 99999)")
