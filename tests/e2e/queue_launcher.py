"""Run the real ``triaged`` CLI with one extra queue, ``test.work``, for the queue e2e tests.

The queue tests need jobs whose runs can be watched from outside and that can fail or
crash on demand; the foundation has no business queue yet. This launcher wraps the
composition root (``daemon.worker.groups.build_registry``, the name ``poller_group``
calls at run time) so that the registry it returns also serves ``test.work``, then runs
the unchanged CLI::

    python tests/e2e/queue_launcher.py serve|worker

The handler is idempotent and observable. Each run inserts a row into ``test_runs``
(create it with :data:`TEST_RUNS_DDL` before starting processes) when it starts, and
fills ``finished_at`` and ``outcome`` (``ok``, ``error``, ``cancelled``) when it ends, so
a run killed with its process keeps ``finished_at`` NULL. Times are the database's
``clock_timestamp()``, one clock for every process. Job payload (all optional):

* ``sleep``: seconds the run takes (default 0);
* ``fail``: probability that the run raises ``RuntimeError`` after its sleep;
* ``exit``: probability that the run calls ``os._exit(137)`` part-way through its sleep,
  taking the whole process down (a hard crash mid-job: no outcome, no drain, no release);
* ``seed``: the draws of a run are made with ``Random(f"{seed}:{job id}:{attempt}")``, so
  a given job and attempt always decides the same way and a failing run can be replayed.

A completed run returns ``{"run": <test_runs.id>, "attempt": n}``: the job's stored
``result`` names the run whose outcome was recorded.

The end of this module holds what the tests need on their side of the database: creating
``test_runs``, enqueueing ``test.work`` jobs, reading runs, and the check that no job ran
twice at once.
"""

from __future__ import annotations

import bisect
import os
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import trio

import daemon.worker.groups as groups
from daemon.cli import main
from daemon.queue import Backoff, JobSpec, enqueue_many
from daemon.shared.db import TrioConnection, migrate

if TYPE_CHECKING:
    from daemon.composition import Components
    from daemon.queue import Handler, HandlerRegistry, Job
    from daemon.shared.db import Pool

QUEUE = "test.work"
EXIT_STATUS = 137  # what os._exit() gives, as a SIGKILL would (128 + 9) under a shell

TEST_RUNS_DDL = """
CREATE TABLE IF NOT EXISTS test_runs (
    id           bigserial PRIMARY KEY,
    job_id       bigint NOT NULL,
    attempt      integer NOT NULL,
    worker_pid   integer NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    outcome      text  -- ok | error | cancelled; NULL: the process died during the run
)
"""

_CONNECTIONS = 3  # per process: each run makes two short statements


class _Connections:
    """A few autocommit connections of this process to the test database.

    Not the daemon's pool: the handler must not compete with the queue machinery for its
    connections, or the test would measure itself.
    """

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._idle: list[TrioConnection[Any]] = []
        self._limiter = trio.CapacityLimiter(_CONNECTIONS)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[TrioConnection[Any]]:
        async with self._limiter:
            if self._idle:
                conn = self._idle.pop()
            else:
                conn = await TrioConnection.connect(self._conninfo, autocommit=True)
            try:
                yield conn
            except BaseException:
                with trio.CancelScope(shield=True):
                    await conn.close()  # maybe mid-statement: never reuse it
                raise
            self._idle.append(conn)


def make_handler(conninfo: str) -> Handler:
    connections = _Connections(conninfo)

    async def work(job: Job) -> dict[str, int]:
        payload = job.payload
        rng = random.Random(f"{payload.get('seed', 0)}:{job.id}:{job.attempt}")
        crash = rng.random() < float(payload.get("exit", 0))
        fail = rng.random() < float(payload.get("fail", 0))
        crash_after = rng.random()
        sleep = float(payload.get("sleep", 0))
        async with connections.connection() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO test_runs (job_id, attempt, worker_pid, started_at)"
                    " VALUES (%s, %s, %s, clock_timestamp()) RETURNING id",
                    (job.id, job.attempt, os.getpid()),
                )
            ).fetchone()
        assert row is not None
        run_id = int(row[0])
        outcome = "cancelled"  # unless the run gets to decide otherwise
        try:
            if crash:
                await trio.sleep(sleep * crash_after)
                os._exit(EXIT_STATUS)
            await trio.sleep(sleep)
            if fail:
                outcome = "error"
                raise RuntimeError(f"injected failure of job {job.id} attempt {job.attempt}")
            outcome = "ok"
            return {"run": run_id, "attempt": job.attempt}
        finally:
            with trio.CancelScope(shield=True):
                async with connections.connection() as conn:
                    await conn.execute(
                        "UPDATE test_runs SET finished_at = clock_timestamp(), outcome = %s"
                        " WHERE id = %s",
                        (outcome, run_id),
                    )

    return work


_original_build_registry = groups.build_registry


def build_registry_with_test_queue(
    components: Components, pool: Pool, analyzers: Any = None
) -> HandlerRegistry:
    registry = _original_build_registry(components, pool, analyzers)
    settings = components.settings
    if settings.database_url is None:
        raise SystemExit("queue_launcher needs TRIAGED_DATABASE_URL (test_runs lives there)")
    registry.register(QUEUE, make_handler(settings.database_url.get_secret_value()))
    return registry


def install() -> None:
    groups.build_registry = build_registry_with_test_queue


# -- the tests' side ---------------------------------------------------------------------


async def prepare(pool: Pool) -> None:
    """Migrate the database and create ``test_runs``, before any process starts."""
    await migrate.apply(pool)
    async with pool.transaction() as conn:
        await conn.execute(TEST_RUNS_DDL)


async def enqueue_work(
    pool: Pool,
    payloads: Sequence[Mapping[str, Any]],
    *,
    max_attempts: int = 5,
    backoff: Backoff | None = None,
) -> list[int]:
    """One ``test.work`` job per payload, in one transaction; their ids, in order."""
    specs = [
        JobSpec(queue=QUEUE, payload=p, max_attempts=max_attempts, backoff=backoff)
        for p in payloads
    ]
    async with pool.transaction() as conn:
        return await enqueue_many(conn, specs)


async def state_counts(pool: Pool) -> dict[str, int]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT state::text, count(*) FROM jobs WHERE queue = %s GROUP BY 1", (QUEUE,)
            )
        ).fetchall()
    return {state: count for state, count in rows}


async def db_now(pool: Pool) -> datetime:
    """The database's clock, the one ``test_runs`` times are taken with."""
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT clock_timestamp()")).fetchone()
    assert row is not None
    return row[0]


@dataclass(frozen=True)
class Run:
    id: int
    job_id: int
    attempt: int
    worker_pid: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None


async def runs_by_job(pool: Pool) -> dict[int, list[Run]]:
    """Every recorded run, per job, in the order they started."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT id, job_id, attempt, worker_pid, started_at, finished_at, outcome"
                " FROM test_runs ORDER BY started_at, id"
            )
        ).fetchall()
    runs: dict[int, list[Run]] = defaultdict(list)
    for row in rows:
        runs[row[1]].append(Run(*row))
    return runs


def concurrent_runs(
    runs: Mapping[int, Sequence[Run]], deaths: Mapping[int, Sequence[datetime]]
) -> list[str]:
    """Runs of one job that overlapped in time; empty when none did.

    A run is over at its ``finished_at``; a run without one was cut short by the death of
    its process, and is over when that process died: the first death of its pid after the
    run started (``deaths``: pid -> times, database clock, noted by the test as soon as it
    saw the process gone, so they are late by at most its polling period; a pid can be
    reused). A run with neither is reported: something lost track of it.
    """
    problems: list[str] = []
    for job_id, job_runs in runs.items():
        busy_until: datetime | None = None
        for run in sorted(job_runs, key=lambda r: (r.started_at, r.id)):
            if busy_until is not None and run.started_at < busy_until:
                problems.append(
                    f"job {job_id}: run {run.id} (attempt {run.attempt}, pid "
                    f"{run.worker_pid}) started at {run.started_at:%H:%M:%S.%f}, "
                    f"before an earlier run ended at {busy_until:%H:%M:%S.%f}"
                )
            end = run.finished_at
            if end is None:
                died = sorted(deaths.get(run.worker_pid, ()))
                index = bisect.bisect_left(died, run.started_at)
                if index == len(died):
                    problems.append(
                        f"job {job_id}: run {run.id} (pid {run.worker_pid}) never "
                        "finished, yet its process did not die"
                    )
                    continue
                end = died[index]
            busy_until = end if busy_until is None else max(busy_until, end)
    return problems


if __name__ == "__main__":
    install()
    main()
