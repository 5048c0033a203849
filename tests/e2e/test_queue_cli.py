"""``triaged jobs …`` and ``triaged queues …`` as subprocesses against a real database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from daemon.queue import JobSpec, enqueue_many
from daemon.shared.db import migrate, open_pool
from tests.e2e.process import ROOT, base_env

pytestmark = pytest.mark.e2e


class Cli:
    """Runs ``python -m daemon ARGS`` on one database; warnings only on stderr."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.env = base_env(
            TRIAGED_DATABASE_URL=database_url,
            TRIAGED_DATA_DIR=str(data_dir),
            TRIAGED_LOG_LEVEL="WARNING",
        )

    async def __call__(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        with trio.fail_after(60):
            return await trio.run_process(
                [sys.executable, "-m", "daemon", *args],
                env=self.env,
                cwd=ROOT,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

    async def ok(self, *args: str) -> str:
        result = await self(*args)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stderr == b"", result.stderr.decode()
        return result.stdout.decode()

    async def fails(self, status: int, *args: str) -> str:
        """The single line the command wrote on stderr."""
        result = await self(*args)
        assert result.returncode == status, (result.stdout, result.stderr)
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 or status == 2, lines  # argparse adds its usage lines
        return lines[-1]


@pytest.fixture
def cli(database_url, tmp_path) -> Cli:
    return Cli(database_url, tmp_path)


async def _seed(database_url: str) -> list[int]:
    async with open_pool(database_url, max_size=2) as pool:
        await migrate.apply(pool)
        async with pool.transaction() as conn:
            ids = await enqueue_many(
                conn, [JobSpec(queue="mail", payload={"n": i}) for i in range(3)]
            )
            await enqueue_many(conn, [JobSpec(queue="other")])
            await conn.execute(
                "UPDATE jobs SET state = 'failed', finished_at = now(), "
                "attempts = 5, last_error = 'SMTPError: 550' WHERE id = %s",
                (ids[0],),
            )
    return ids


async def _states(database_url: str) -> dict[int, str]:
    async with open_pool(database_url, max_size=1) as pool, pool.connection() as conn:
        rows = await (await conn.execute("SELECT id, state::text FROM jobs")).fetchall()
    return dict(rows)


async def _concurrently(*calls):
    """Await the given coroutines at once (each starts its own process); their results."""
    results: list = [None] * len(calls)

    async def run(index, call):
        results[index] = await call

    async with trio.open_nursery() as nursery:
        for index, call in enumerate(calls):
            nursery.start_soon(run, index, call)
    return results


async def test_jobs_list_show_cancel_and_retry(cli, database_url):
    failed, waiting, other_mail = await _seed(database_url)

    (
        listed,
        table,
        page2,
        only_failed,
        shown,
        text,
        show_unknown,
        cancel_unknown,
    ) = await _concurrently(
        cli.ok("jobs", "list", "--queue", "mail", "--json"),
        cli.ok("jobs", "list", "--limit", "2"),
        cli.ok("jobs", "list", "--limit", "2", "--before-id", str(other_mail)),
        cli.ok("jobs", "list", "--state", "failed"),
        cli.ok("jobs", "show", str(waiting), "--json"),
        cli.ok("jobs", "show", str(failed)),
        cli.fails(1, "jobs", "show", "987654"),
        cli.fails(1, "jobs", "cancel", "987654"),
    )
    assert [(j["id"], j["state"]) for j in json.loads(listed)] == [
        (other_mail, "created"),
        (waiting, "created"),
        (failed, "failed"),
    ]
    assert json.loads(listed)[2]["last_error"] == "SMTPError: 550"
    lines = table.splitlines()
    assert lines[0].split() == [
        "ID",
        "QUEUE",
        "STATE",
        "ATTEMPTS",
        "PRIO",
        "RUN",
        "AT",
        "FINISHED",
        "LAST",
        "ERROR",
    ]
    assert lines[1].split()[:4] == [str(other_mail + 1), "other", "created", "0/5"]
    assert len(lines) == 4 and lines[-1] == f"(more: --before-id {other_mail})"
    assert [line.split()[0] for line in page2.splitlines()[1:]] == [str(waiting), str(failed)]
    assert "SMTPError: 550" in only_failed and len(only_failed.splitlines()) == 2
    shown = json.loads(shown)
    assert (shown["id"], shown["queue"], shown["payload"]) == (waiting, "mail", {"n": 1})
    assert "state: failed" in text and "last_error: SMTPError: 550" in text
    assert show_unknown == cancel_unknown == "triaged: job 987654 not found"

    assert "cancelled (was created)" in await cli.ok("jobs", "cancel", str(waiting))
    cancel_again, _, retry_live = await _concurrently(
        cli.fails(1, "jobs", "cancel", str(waiting)),
        cli.ok("jobs", "retry", str(failed)),
        cli.fails(1, "jobs", "retry", str(other_mail)),
    )
    assert cancel_again == (
        f"triaged: job {waiting} is cancelled: only created, retry or active jobs can be cancelled"
    )
    assert retry_live == (
        f"triaged: job {other_mail} is created: only failed or cancelled jobs can be retried"
    )
    states = await _states(database_url)
    assert (states[failed], states[waiting], states[other_mail]) == (
        "created",
        "cancelled",
        "created",
    )


async def test_queues_stats_pause_resume_and_set(cli, database_url):
    await _seed(database_url)
    async with open_pool(database_url, max_size=1) as pool, pool.connection() as conn:
        # The queues the migrations configure (the pipeline's, sources', ...): left out.
        migrated = {
            row[0] for row in await (await conn.execute("SELECT name FROM queues")).fetchall()
        }
    out = await cli.ok(
        "queues",
        "set",
        "mail",
        "--global-concurrency",
        "2",
        "--max-attempts",
        "3",
        "--dead-letter",
        "mail.dead",
        "--timeout",
        "30",
    )
    assert json.loads(out.splitlines()[-1])["dead_letter_queue"] == "mail.dead"
    await cli.ok("queues", "set", "mail", "--timeout", "none", "--retain-completed", "60")
    await cli.ok("queues", "pause", "mail")

    as_json, table, self_dead_letter = await _concurrently(
        cli.ok("queues", "--json"),
        cli.ok("queues"),
        cli.fails(2, "queues", "set", "mail", "--dead-letter", "mail"),
    )
    stats = {q["name"]: q for q in json.loads(as_json) if q["name"] not in migrated}
    assert list(stats) == ["mail", "other"]
    mail = stats["mail"]
    assert (mail["created"], mail["failed"], mail["configured"]) == (2, 1, True)
    assert mail["policy"] == {
        "paused": True,
        "global_concurrency": 2,
        "max_attempts": 3,
        "backoff_base_seconds": 1.0,
        "backoff_max_seconds": 600.0,
        "timeout_seconds": None,
        "dead_letter_queue": "mail.dead",
        "retain_completed_seconds": 60.0,
        "retain_failed_seconds": None,
    }
    assert (stats["other"]["configured"], stats["other"]["policy"]["paused"]) == (False, False)
    lines = [line for line in table.splitlines() if line.split()[0] not in migrated]
    assert lines[0].split()[:8] == [
        "QUEUE",
        "PAUSED",
        "CREATED",
        "RETRY",
        "ACTIVE",
        "COMPLETED",
        "CANCELLED",
        "FAILED",
    ]
    assert lines[1].split()[:8] == ["mail", "yes", "2", "0", "0", "0", "0", "1"]
    assert lines[2].split()[:2] == ["other", "no"]
    assert self_dead_letter == "triaged: a queue cannot be its own dead-letter queue"

    await cli.ok("queues", "resume", "mail")
    resumed = {q["name"]: q for q in json.loads(await cli.ok("queues", "--json"))}
    assert resumed["mail"]["policy"]["paused"] is False


def test_bad_arguments_exit_2_in_a_real_process(tmp_path):
    # An unreachable database: argparse refuses the command line before any connection.
    env = Cli("postgresql://nobody@127.0.0.1:1/none", tmp_path).env
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "jobs", "show", "abc"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "triaged jobs show: error: argument id: not an integer: 'abc'"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "list", "--state", "done"], "argument --state: invalid choice: 'done'"),
        (["jobs", "list", "--limit", "0"], "argument --limit: must be between 1 and 1000"),
        (["jobs", "list", "--before-id", "-4"], "argument --before-id: not a job id: -4"),
        (["queues", "set", "q", "--max-attempts", "0"], "--max-attempts: must be at least 1: 0"),
        (["queues", "set", "q", "--backoff-base", "-1"], "must be a number of seconds >= 0: -1"),
        (["queues", "set", "q", "--timeout", "0"], "must be a number of seconds > 0: 0"),
        (["queues", "set", "q", "--global-concurrency", "x"], "not an integer: 'x'"),
        (["queues", "set", "q", "--retain-failed", "soon"], "not a number: 'soon'"),
        (["queues", "pause", "bad name"], "invalid queue name 'bad name'"),
        (["jobs"], "the following arguments are required: ACTION"),
    ],
)
def test_bad_arguments_exit_2(capsys, args, message):
    from daemon.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
