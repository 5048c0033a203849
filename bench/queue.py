"""Benchmark of the job queue engine (daemon.queue), with the issue's targets.

Measures, against the PostgreSQL server at ``--url`` (a database named
``triaged_bench`` is created, migrated and dropped for every measurement):

* **bulk enqueue**, jobs/s: ``enqueue_many`` of 100,000 jobs in batches of 10,000, each
  batch its own transaction;
* **single enqueue**, jobs/s: 5,000 ``enqueue`` calls one after the other on one
  autocommit connection (so each job is its own transaction);
* **drain**, jobs/s: 20,000 no-op jobs already queued, one ``QueueWorker`` with the
  default ``WorkerOptions`` (except the conninfo) on a default pool, the queue
  registered with concurrency 10, then 100; from the worker's start to its return
  after ``request_stop`` (every outcome written);
* **wake-up latency**, ms p50 / p95 / max: 200 jobs enqueued 20 ms apart (autocommit,
  from another connection of the same process) to an idle worker, timed two ways in the
  same run: from just before the ``enqueue`` call to the start of the handler (the clock
  of the reference figures: the targets and the references apply to this one), and from
  the return of the enqueue's commit to the start of the handler (the worker's share
  alone: NOTIFY delivery, claim, handler start).

Every figure is measured twice: with the server's default ``synchronous_commit = on``
(each commit waits for its WAL flush: the disk decides), and with
``synchronous_commit = off`` set on the benchmark database (commits return before the
flush; a crash can lose the last few hundred ms of commits, never corrupt). Each of the
``--runs`` runs (default 3) is a fresh process; the table shows the median of the runs
and every run's figure. The reference figures were measured on this machine with the
server default ``synchronous_commit = on``: compare them with the "sync commit on"
column.

    .venv/bin/python bench/queue.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# This file is named queue.py: run as a script, its directory must not shadow the
# standard library's ``queue`` (which trio and psycopg import); the project root must
# be importable instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import psycopg  # noqa: E402
import trio  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

from daemon.queue import (  # noqa: E402
    HandlerRegistry,
    Job,
    JobSpec,
    QueueWorker,
    WorkerOptions,
    enqueue,
    enqueue_many,
)
from daemon.shared.db import TrioConnection, migrate, open_pool  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "triaged_bench"
BULK_JOBS = 100_000
BULK_BATCH = 10_000
SINGLE_JOBS = 5_000
DRAIN_JOBS = 20_000
WAKE_JOBS = 200
WAKE_GAP = 0.020

# (key, label, unit, target, reference measured on this machine with the same workload and
# synchronous_commit = on). The references' wake-up latencies start their clock before the
# enqueue call: the targets and references go with the "from before the enqueue call" rows.
WAKE_CALL = "from before the enqueue call"
WAKE_COMMIT = "from after its commit returned"
METRICS = [
    ("bulk", "bulk enqueue (batches of 10,000)", "jobs/s", ">= 100,000", "PgQueuer 74,608"),
    ("single", "single enqueue (autocommit, one by one)", "jobs/s", ">= 3,500", "PgQueuer 3,138"),
    (
        "drain_10",
        "drain 20,000 no-op jobs, concurrency 10",
        "jobs/s",
        ">= 6,000",
        "PgQueuer 1.6 2,341; pg-boss 10.4 (batch 100) 2,091; procrastinate 3.10 827",
    ),
    ("drain_100", "drain 20,000 no-op jobs, concurrency 100", "jobs/s", "-", "-"),
    (
        "wake_call_p50",
        f"wake-up latency p50, {WAKE_CALL}",
        "ms",
        "<= 3",
        "procrastinate 3.5; PgQueuer 3.9",
    ),
    (
        "wake_call_p95",
        f"wake-up latency p95, {WAKE_CALL}",
        "ms",
        "<= 5",
        "procrastinate 4.9; PgQueuer 5.2",
    ),
    ("wake_call_max", f"wake-up latency max, {WAKE_CALL}", "ms", "-", "-"),
    ("wake_commit_p50", f"wake-up latency p50, {WAKE_COMMIT}", "ms", "-", "- (other clock)"),
    ("wake_commit_p95", f"wake-up latency p95, {WAKE_COMMIT}", "ms", "-", "- (other clock)"),
    ("wake_commit_max", f"wake-up latency max, {WAKE_COMMIT}", "ms", "-", "-"),
]
HIGHER_IS_BETTER = {"bulk", "single", "drain_10", "drain_100"}
TARGETS = {
    "bulk": 100_000,
    "single": 3_500,
    "drain_10": 6_000,
    "wake_call_p50": 3.0,
    "wake_call_p95": 5.0,
}
MODES = {
    "on": "synchronous_commit = on (server default)",
    "off": "synchronous_commit = off (on the bench database)",
}


def fresh_database(admin_url: str, durable: bool) -> str:
    """(Re)create the bench database; its URL. Blocking: called outside ``trio.run``."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
        if not durable:
            conn.execute(f'ALTER DATABASE "{BENCH_DB}" SET synchronous_commit = off')
    url = make_conninfo(**{**conninfo_to_dict(admin_url), "dbname": BENCH_DB})
    trio.run(_migrate, url)
    return url


def drop_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


async def _migrate(url: str) -> None:
    async with open_pool(url, max_size=1, name="bench-migrate") as pool:
        await migrate.apply(pool)


async def bulk_enqueue(url: str) -> float:
    specs = [JobSpec(queue="bulk", payload={"n": i}) for i in range(BULK_JOBS)]
    async with await TrioConnection.connect(url) as conn:
        started = time.perf_counter()
        for start in range(0, BULK_JOBS, BULK_BATCH):
            async with conn.transaction():
                await enqueue_many(conn, specs[start : start + BULK_BATCH])
        elapsed = time.perf_counter() - started
    return BULK_JOBS / elapsed


async def single_enqueue(url: str) -> float:
    async with await TrioConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for i in range(SINGLE_JOBS):
            await enqueue(conn, "single", {"n": i})
        elapsed = time.perf_counter() - started
    return SINGLE_JOBS / elapsed


async def drain(url: str, concurrency: int) -> float:
    async with await TrioConnection.connect(url) as conn:
        for start in range(0, DRAIN_JOBS, BULK_BATCH):
            async with conn.transaction():
                await enqueue_many(
                    conn,
                    [
                        JobSpec(queue="drain", payload={"n": i})
                        for i in range(start, start + BULK_BATCH)
                    ],
                )
        await conn.set_autocommit(True)
        await conn.execute("VACUUM ANALYZE jobs")
    done = 0
    finished = trio.Event()

    async def noop(job: Job) -> None:
        nonlocal done
        done += 1
        if done == DRAIN_JOBS:
            finished.set()

    registry = HandlerRegistry()
    registry.register("drain", noop, concurrency=concurrency)
    async with open_pool(url, name="bench") as pool:
        worker = QueueWorker(pool, registry, WorkerOptions(conninfo=url))
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await finished.wait()
            worker.request_stop()
        elapsed = time.perf_counter() - started
        async with pool.connection() as conn:
            row = await (
                await conn.execute("SELECT count(*) FROM jobs WHERE state = 'completed'")
            ).fetchone()
    if row is None or row[0] != DRAIN_JOBS:
        raise AssertionError(f"drain: {row} completed, expected {DRAIN_JOBS}")
    return DRAIN_JOBS / elapsed


def _summary(latencies_ms: list[float]) -> tuple[float, float, float]:
    """p50, p95 and max of the latencies."""
    ordered = sorted(latencies_ms)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return statistics.median(ordered), p95, ordered[-1]


async def wake_up(url: str) -> dict[str, float]:
    """Wake-up latencies, ms, on two clocks of the same jobs: ``wake_call_*`` from just
    before the ``enqueue`` call (as the references), ``wake_commit_*`` from the return of
    its commit."""
    started_at: dict[int, float] = {}
    called_at: dict[int, float] = {}
    committed_at: dict[int, float] = {}
    arrived = trio.Event()

    async def handler(job: Job) -> None:
        started_at[job.payload["n"]] = time.perf_counter()
        arrived.set()

    registry = HandlerRegistry()
    registry.register("wake", handler)
    async with (
        open_pool(url, name="bench") as pool,
        await TrioConnection.connect(url, autocommit=True) as producer,
    ):
        worker = QueueWorker(pool, registry, WorkerOptions(conninfo=url))
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await trio.sleep(0.5)  # LISTEN is up, the fetcher is asleep
            for i in range(WAKE_JOBS):
                arrived = trio.Event()
                called_at[i] = time.perf_counter()
                await enqueue(producer, "wake", {"n": i})
                committed_at[i] = time.perf_counter()
                with trio.fail_after(5):
                    await arrived.wait()
                await trio.sleep(WAKE_GAP)
            worker.request_stop()
    results: dict[str, float] = {}
    for clock, since in (("call", called_at), ("commit", committed_at)):
        p50, p95, worst = _summary([(started_at[i] - since[i]) * 1000 for i in range(WAKE_JOBS)])
        results.update(
            {f"wake_{clock}_p50": p50, f"wake_{clock}_p95": p95, f"wake_{clock}_max": worst}
        )
    return results


PHASES = ("bulk", "single", "drain", "wake")


def one_run(admin_url: str, durable: bool, phases: tuple[str, ...] = PHASES) -> dict[str, float]:
    results: dict[str, float] = {}
    try:
        if "bulk" in phases:
            url = fresh_database(admin_url, durable)
            results["bulk"] = trio.run(bulk_enqueue, url)
        if "single" in phases:
            url = fresh_database(admin_url, durable)
            results["single"] = trio.run(single_enqueue, url)
        if "drain" in phases:
            for concurrency in (10, 100):
                url = fresh_database(admin_url, durable)
                results[f"drain_{concurrency}"] = trio.run(drain, url, concurrency)
        if "wake" in phases:
            url = fresh_database(admin_url, durable)
            results.update(trio.run(wake_up, url))
    finally:
        drop_database(admin_url)
    return results


def fmt(key: str, value: float) -> str:
    return f"{value:.2f}" if key.startswith("wake") else f"{value:,.0f}"


def verdict(key: str, value: float) -> str:
    if key not in TARGETS:
        return ""
    ok = value >= TARGETS[key] if key in HIGHER_IS_BETTER else value <= TARGETS[key]
    return "met" if ok else "MISSED"


def print_table(runs: dict[str, list[dict[str, float]]]) -> None:
    modes = list(runs)
    header = [
        "metric",
        "unit",
        *(f"sync commit {m}" for m in modes),
        "target",
        f"target met ({' / '.join(modes)})",
        "reference (same machine, sync commit on: compare with the sync commit on column)",
        f"runs ({' ; '.join(modes)})",
    ]
    rows = []
    for key, label, unit, target, reference in METRICS:
        if any(key not in r for results in runs.values() for r in results):
            continue
        medians = {
            mode: statistics.median(r[key] for r in results) for mode, results in runs.items()
        }
        each = " ; ".join(
            " / ".join(fmt(key, r[key]) for r in results) for results in runs.values()
        )
        met = " / ".join(verdict(key, medians[m]) or "-" for m in runs)
        rows.append(
            [label, unit, *(fmt(key, medians[m]) for m in runs), target, met, reference, each]
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=DEFAULT_URL,
        help="a database on a server where the user may create databases",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--modes", default="on,off", help="synchronous_commit modes to measure, comma-separated"
    )
    parser.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"phases to run, comma-separated among {', '.join(PHASES)}",
    )
    parser.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    phases = tuple(p for p in args.only.split(",") if p)
    if unknown := set(phases) - set(PHASES):
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    if args.child:
        print(json.dumps(one_run(args.url, durable=args.child == "on", phases=phases)))
        return

    load_before = os.getloadavg()
    modes = [m for m in args.modes.split(",") if m]
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for mode in modes:
        for i in range(args.runs):
            print(f"{MODES[mode]}: run {i + 1}/{args.runs} ...", file=sys.stderr, flush=True)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    mode,
                    "--url",
                    args.url,
                    "--only",
                    ",".join(phases),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs[mode].append(json.loads(out))
            print(f"  {out.strip()}", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    print(
        f"Medians of {args.runs} runs (each a fresh process, each figure a fresh "
        f"database); targets from the issue. {os.cpu_count()} CPUs; load average "
        f"(1/5/15 min) {_load(load_before)} before, {_load(load_after)} after."
    )
    print(
        "The references were measured with synchronous_commit = on: compare them with the "
        "sync commit on column. Their wake-up latencies start before the enqueue call: "
        f'compare them (and the targets) with the rows "{WAKE_CALL}".'
    )
    print_table(runs)


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in load)


if __name__ == "__main__":
    main()
