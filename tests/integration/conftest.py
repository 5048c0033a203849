from __future__ import annotations

import pytest

from daemon.shared.db import migrate, open_pool


@pytest.fixture
async def pool(database_url):
    """A pool on a fresh, fully migrated database."""
    async with open_pool(database_url, max_size=10) as pool:
        await migrate.apply(pool)
        yield pool


@pytest.fixture
async def api(pool):
    """The HTTP API served on loopback over ``pool`` (see ``api_server.py``)."""
    from tests.integration.api_server import serve_api

    async with serve_api(pool) as server:
        yield server
