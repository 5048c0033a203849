"""Benchmark of the Trio PostgreSQL layer (daemon.shared.db).

Measures, against the server at ``--url`` (default: the local PostgreSQL):

* sequential ``SELECT 1`` per second on one autocommit connection;
* 16 tasks sharing a pool of 8 connections, operations per second, where an operation
  borrows a connection, runs ``SELECT 1`` and gives it back; once in autocommit
  (one round trip, comparable to the reference) and once as the pool hands connections
  out (autocommit off: BEGIN, SELECT 1, and the ROLLBACK of the release);
* NOTIFY -> wake-up latency (median, microseconds) of a task blocked in ``notifies()``
  (the sending session runs with ``synchronous_commit = off``, as the reference did);
* cancellation of ``SELECT pg_sleep(5)`` by ``trio.move_on_after(0.2)``: time until
  control returns (median of 5), and whether the connection is still usable;
* COPY TO throughput (rows/s and MB/s) of ~90-byte rows read block by block;
* for scale, the same sequential ``SELECT 1`` with psycopg's blocking connection (no
  event loop at all), measured just before in the same process, and the adapter's
  figure as a percentage of it: round-trip latency on this 2-core VM drifts a lot from
  run to run, the ratio much less.

Each of the ``--runs`` runs (default 3) is a fresh process; the table shows every run,
their median, and the figures of shared/notes/postgres-driver.md as reference targets.

    .venv/bin/python bench/db.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import trio

from daemon.shared.db import TrioConnection, open_pool

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SECONDS = 2.0
TASKS = 16
POOL_SIZE = 8
NOTIFY_ROUNDS = 300
CANCEL_ROUNDS = 5
COPY_ROWS = 500_000

# (key, label, unit, reference from shared/notes/postgres-driver.md)
METRICS = [
    ("seq_select", "sequential SELECT 1, one connection", "ops/s", "12,928"),
    ("pool_autocommit", f"{TASKS} tasks on a pool of {POOL_SIZE}, autocommit", "ops/s", "19,777"),
    ("pool_tx", f"{TASKS} tasks on a pool of {POOL_SIZE}, autocommit off", "ops/s", "-"),
    ("notify_wake", "NOTIFY -> wake, median", "us", "156"),
    ("cancel_return", "cancel pg_sleep(5) after 0.2 s: returns after", "s", "0.2"),
    ("cancel_reusable", "  ... connection reusable, server query gone", "", "yes"),
    ("copy_rows", "COPY TO, ~90-byte rows", "rows/s", "-"),
    ("copy_mb", "COPY TO throughput", "MB/s", "50"),
    ("sync_select", "baseline: psycopg blocking, seq SELECT 1", "ops/s", "-"),
    ("seq_ratio", "adapter seq SELECT 1 / blocking baseline", "%", "-"),
]


async def seq_select(url: str) -> float:
    async with await TrioConnection.connect(url, autocommit=True) as conn:
        count = 0
        deadline = time.perf_counter() + SECONDS
        while time.perf_counter() < deadline:
            await conn.execute("SELECT 1")
            count += 1
    return count / SECONDS


async def pool_ops(url: str, *, autocommit: bool) -> float:
    count = 0
    async with open_pool(url, min_size=POOL_SIZE, max_size=POOL_SIZE, name="bench") as pool:
        await pool.check()
        with trio.fail_after(10):
            while pool.stats().idle < POOL_SIZE:  # noqa: ASYNC110
                await trio.sleep(0.01)
        deadline = time.perf_counter() + SECONDS

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                async with pool.connection() as conn:
                    if autocommit:
                        await conn.set_autocommit(True)  # no I/O; reset on return
                    await conn.execute("SELECT 1")
                count += 1

        async with trio.open_nursery() as nursery:
            for _ in range(TASKS):
                nursery.start_soon(worker)
    return count / SECONDS


async def notify_wake(url: str) -> float:
    latencies: list[float] = []
    async with (
        await TrioConnection.connect(url, autocommit=True) as listener,
        await TrioConnection.connect(url, autocommit=True) as sender,
    ):
        await listener.execute("LISTEN bench")
        # As for the reference figures: NOTIFY commits, and a WAL flush per notification
        # would measure the disk, not the driver.
        await sender.execute("SET synchronous_commit = off")
        sent_at = 0.0
        ready = trio.Event()

        async def listen() -> None:
            gen = listener.notifies()
            try:
                ready.set()
                async for _ in gen:
                    latencies.append(time.perf_counter() - sent_at)
                    if len(latencies) == NOTIFY_ROUNDS:
                        return
            finally:
                await gen.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            await ready.wait()
            for _ in range(NOTIFY_ROUNDS):
                await trio.sleep(0.002)  # the listener is parked on its socket again
                sent_at = time.perf_counter()
                await sender.execute("NOTIFY bench")
    return statistics.median(latencies) * 1e6


async def cancel_latency(url: str) -> tuple[float, bool]:
    durations = []
    reusable = True
    async with (
        await TrioConnection.connect(url, autocommit=True) as conn,
        await TrioConnection.connect(url, autocommit=True) as observer,
    ):
        for _ in range(CANCEL_ROUNDS):
            started = time.perf_counter()
            with trio.move_on_after(0.2):
                await conn.execute("SELECT pg_sleep(5)")
            durations.append(time.perf_counter() - started)
            cur = await observer.execute(
                "SELECT state FROM pg_stat_activity WHERE pid = %s", (conn.info.backend_pid,)
            )
            state = await cur.fetchone()
            row = await (await conn.execute("SELECT 1")).fetchone()
            reusable = reusable and state == ("idle",) and row == (1,)
    return statistics.median(durations), reusable


async def copy_to(url: str) -> tuple[float, float]:
    total = 0
    query = (
        "COPY (SELECT g, md5(g::text), repeat('x', 40),"
        " timestamptz '2024-01-01' + g * interval '1s'"
        f" FROM generate_series(1, {COPY_ROWS}) g) TO STDOUT"
    )
    async with await TrioConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        async with conn.cursor() as cur, cur.copy(query) as copy:
            async for block in copy:
                total += len(block)
        elapsed = time.perf_counter() - started
    return COPY_ROWS / elapsed, total / elapsed / 1e6


def sync_select(url: str) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        count = 0
        deadline = time.perf_counter() + SECONDS
        while time.perf_counter() < deadline:
            conn.execute("SELECT 1")
            count += 1
    return count / SECONDS


async def one_run(url: str) -> dict[str, object]:
    cancel_return, cancel_reusable = await cancel_latency(url)
    copy_rows, copy_mb = await copy_to(url)
    return {
        "seq_select": await seq_select(url),
        "pool_autocommit": await pool_ops(url, autocommit=True),
        "pool_tx": await pool_ops(url, autocommit=False),
        "notify_wake": await notify_wake(url),
        "cancel_return": cancel_return,
        "cancel_reusable": cancel_reusable,
        "copy_rows": copy_rows,
        "copy_mb": copy_mb,
    }


def fmt(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    assert isinstance(value, float)
    if key == "cancel_return":
        return f"{value:.3f}"
    if key in ("copy_mb", "seq_ratio"):
        return f"{value:.1f}"
    return f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        baseline = sync_select(args.url)
        results = trio.run(one_run, args.url)
        results["sync_select"] = baseline
        results["seq_ratio"] = results["seq_select"] / baseline * 100
        print(json.dumps(results))
        return

    runs = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs} ...", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--url", args.url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        runs.append(json.loads(out))

    header = ["metric", "unit", *(f"run {i + 1}" for i in range(len(runs))), "median", "reference"]
    rows = []
    for key, label, unit, reference in METRICS:
        values = [run[key] for run in runs]
        if isinstance(values[0], bool):
            median: object = all(values)
        else:
            median = statistics.median(values)
        rows.append([label, unit, *(fmt(key, v) for v in values), fmt(key, median), reference])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        cells = [
            str(c).ljust(w) if i < 2 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
