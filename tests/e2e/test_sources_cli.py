"""``triaged sources`` as an operator uses it: list, poll here, disable (a poll is then
refused), enable, show (never a secret). (Poll now by a worker's job: the API tests and
the e2e of three workers.)"""

from __future__ import annotations

import json
import sys

import pytest
import trio

from daemon.modules.audit import AuditContext
from daemon.modules.ingestion.address_policy import AddressPolicy
from daemon.modules.sources import SourcePolicy, check_source_input, create_source
from daemon.shared.db import migrate, open_pool
from tests.e2e.process import ROOT, base_env
from tests.feed_server import FeedServer

pytestmark = pytest.mark.e2e


async def triaged(database_url: str, *args: str) -> tuple[int, str, str]:
    result = await trio.run_process(
        [sys.executable, "-m", "daemon", *args],
        env=base_env(
            TRIAGED_DATABASE_URL=database_url, TRIAGED_FETCH_ALLOWED_NETWORKS="127.0.0.0/8"
        ),
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_sources_commands(database_url):
    server = FeedServer(entries=3).start()
    try:
        async with open_pool(database_url, max_size=2) as pool:
            await migrate.apply(pool)
            config = {"url": server.url("/feed.xml"), "auth_header": "Bearer hush-42"}
            body = {"name": "alerts", "kind": "feed", "schedule": {"interval_seconds": 3600},
                    "config": config}  # fmt: skip
            policy = SourcePolicy(address=AddressPolicy(allowed_networks=("127.0.0.0/8",)))
            source = await create_source(
                pool, check_source_input(body, policy), context=AuditContext.system()
            )
        code, out, err = await triaged(database_url, "sources")
        assert code == 0, err
        assert "alerts" in out and "feed" in out and "every 3600s" in out
        code, out, err = await triaged(database_url, "sources", "poll", "alerts", "--here")
        assert code == 0, err
        assert json.loads(out)["documents_created"] == 3
        code, out, err = await triaged(
            database_url, "sources", "disable", str(source.id), "--reason", "maintenance"
        )
        assert (code, out.strip()) == (0, f"source {source.id} (alerts) disabled"), err
        code, out, err = await triaged(database_url, "sources", "poll", "alerts")
        assert code == 1 and "disabled (maintenance)" in err
        code, out, err = await triaged(database_url, "sources", "enable", "alerts")
        assert code == 0, err
        code, out, err = await triaged(database_url, "sources", "show", "alerts")
        assert code == 0, err
        shown = json.loads(out)
        assert shown["enabled"] and shown["secrets_set"] == ["auth_header"]
        assert [p["documents_created"] for p in shown["polls"]] == [3]
        assert "hush-42" not in out
    finally:
        server.stop()
    assert {hit.authorized for hit in server.hits} == {"Bearer hush-42"}
