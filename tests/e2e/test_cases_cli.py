"""``triaged cases …`` as subprocesses: list, show and work a case routed by the
pipeline; the same rules as the API (refusals exit 1, nothing changed)."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys

import pytest
import trio

from daemon.shared.db import migrate, open_pool
from tests.e2e.process import ROOT, base_env
from tests.integration.test_case_opening import routed_case

pytestmark = pytest.mark.e2e


@pytest.fixture
def cases_cli(database_url, tmp_path):
    env = base_env(
        TRIAGED_DATABASE_URL=database_url,
        TRIAGED_DATA_DIR=str(tmp_path),
        TRIAGED_LOG_LEVEL="WARNING",
        TRIAGED_CASE_RESOLUTIONS="fixed,mitigated",
    )

    async def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        with trio.fail_after(60):
            return await trio.run_process(
                [sys.executable, "-m", "daemon", "cases", *args],
                env=env,
                cwd=ROOT,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

    return run


async def test_cases_cli_lists_shows_and_works_a_case(cases_cli, database_url):
    async with open_pool(database_url, max_size=2) as pool:
        await migrate.apply(pool)
        _, case_id = await routed_case(pool)
    listed = await cases_cli("list", "--json", "--status", "open")
    assert listed.returncode == 0, listed.stderr
    [case] = json.loads(listed.stdout)
    assert (case["id"], case["severity"], case["version"]) == (case_id, "critical", 1)

    stale = await cases_cli("ack", str(case_id), "--version", "7")
    assert stale.returncode == 1 and b"version 1" in stale.stderr
    acked = await cases_cli("ack", str(case_id), "--version", "1")
    assert acked.returncode == 0, acked.stderr
    assert b"acknowledged" in acked.stdout
    again = await cases_cli("ack", str(case_id))
    assert again.returncode == 1 and b"acknowledged" in again.stderr
    nobody = await cases_cli("assign", str(case_id), "--user-id", "424242")
    assert nobody.returncode == 1 and b"user_id" in nobody.stderr
    wrong = await cases_cli("resolve", str(case_id), "--resolution", "wont_fix")
    assert wrong.returncode == 1 and b"resolution" in wrong.stderr  # not configured here
    resolved = await cases_cli("resolve", str(case_id), "--resolution", "mitigated", "--note", "ok")
    assert resolved.returncode == 0, resolved.stderr
    assert (await cases_cli("list", "--status", "open")).stdout.strip() == b"no cases"

    shown = await cases_cli("show", str(case_id), "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert (record["status"], record["resolution"], record["escalation_due_at"]) == (
        "resolved", "mitigated", None,
    )  # fmt: skip
    assert [(e["kind"], e["actor"]) for e in record["events"]] == [
        ("opened", "system"),
        ("acknowledged", f"cli:{getpass.getuser()}"),
        ("resolved", f"cli:{getpass.getuser()}"),
    ]
    text = await cases_cli("show", str(case_id))
    assert b"history:" in text.stdout and b"resolved" in text.stdout
    missing = await cases_cli("show", "999999")
    assert missing.returncode == 1 and b"no case" in missing.stderr
    assert (await cases_cli("ack", "abc")).returncode == 2
