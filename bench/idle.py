"""Benchmark of what an idle ``triaged`` costs its host, with targets.

Starts the real ``triaged`` (``--processes serve``, or e.g. ``api,worker``) on a fresh
database ``triaged_bench_ingest`` of the server at ``--url`` with the default settings,
waits until it is ready and ``--settle`` seconds more (start-up work), then, for
``--seconds``, sends it nothing and measures:

* **daemon CPU**: user + system time of the daemon's processes and their children, from
  ``/proc``, in ms per second;
* **PostgreSQL CPU**: the same for the server backends connected to the bench database
  (the benchmark's own monitoring connection excluded);
* **transactions/s**: committed and rolled-back transactions of the bench database, from
  ``pg_stat_database`` (an idle backend reports its counts up to 10 s late, so this is
  approximate over a short window).

What runs while idle: the worker's fetchers (woken by NOTIFY and by the due scan, once per
``TRIAGED_QUEUE_POLL_INTERVAL_SECONDS``), the scheduler, the health and loop-lag samplers.
The table shows the median of ``--runs`` runs and each run's figure.

    .venv/bin/python bench/idle.py [--processes serve|api,worker] [--runs 3] [--seconds 30]
        [--env TRIAGED_X=Y ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_ROOT))

import psycopg  # noqa: E402
import trio  # noqa: E402

from bench.ingest import (  # noqa: E402
    BENCH_DB,
    DEFAULT_URL,
    Daemon,
    drop_database,
    recreate_database,
    stop_daemons_on_sigterm,
)

TARGETS = {  # at most, per second of idleness
    "daemon CPU ms/s": 12.0,
    "PostgreSQL CPU ms/s": 3.0,
    "transactions/s": 10.0,
}
_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a live process, else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu(roots: list[int]) -> dict[int, float]:
    """CPU seconds of each live process in the trees under ``roots``."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, (parent, _cpu) in stats.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {}, [pid for pid in roots if pid in stats]
    while todo:
        pid = todo.pop()
        found[pid] = stats[pid][1]
        todo.extend(children.get(pid, ()))
    return found


def backends_cpu(conn: psycopg.Connection) -> dict[int, float]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (BENCH_DB,),
    ).fetchall()
    found = {}
    for (pid,) in rows:
        if (stat := _stat(pid)) is not None:
            found[pid] = stat[1]
    return found


def transactions(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
        (BENCH_DB,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots (a process started meanwhile from zero)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def one_run(args: argparse.Namespace) -> dict[str, float]:
    database = recreate_database(args.url)
    extra = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="triaged-idle-") as workdir:
        daemon = Daemon(database, Path(workdir), extra, args.processes.split(","))
        try:
            trio.run(daemon.ready)
            time.sleep(args.settle)
            roots = [proc.pid for proc in daemon.procs]
            with psycopg.connect(database, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_clear_snapshot()")
                ours, theirs, xacts = tree_cpu(roots), backends_cpu(conn), transactions(conn)
                started = time.monotonic()
                time.sleep(args.seconds)
                elapsed = time.monotonic() - started
                conn.execute("SELECT pg_stat_clear_snapshot()")
                ours_after, theirs_after = tree_cpu(roots), backends_cpu(conn)
                xacts_after = transactions(conn)
        finally:
            daemon.stop()
    drop_database(args.url)
    return {
        "daemon CPU ms/s": spent(ours, ours_after) * 1000 / elapsed,
        "PostgreSQL CPU ms/s": spent(theirs, theirs_after) * 1000 / elapsed,
        "transactions/s": (xacts_after - xacts) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="a database URL on the server")
    parser.add_argument("--processes", default="serve", help="serve, or e.g. api,worker")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured idle time")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after ready")
    parser.add_argument("--env", action="append", default=[], help="TRIAGED_X=Y for the daemon")
    args = parser.parse_args()
    stop_daemons_on_sigterm()
    runs = []
    for index in range(args.runs):
        runs.append(one_run(args))
        print(f"run {index + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in runs[-1].items()))
    print(f"\nidle triaged ({args.processes}), {args.seconds:g} s, median of {args.runs} runs")
    print(f"| {'figure':<22} | {'median':>7} | {'target':>7} | {'met':<3} | runs")
    print(f"|{'-' * 24}|{'-' * 9}|{'-' * 9}|{'-' * 5}|------")
    for name, target in TARGETS.items():
        values = [run[name] for run in runs]
        median = statistics.median(values)
        each = " / ".join(f"{v:.1f}" for v in values)
        met = "yes" if median <= target else "no"
        limit = f"≤ {target:g}"
        print(f"| {name:<22} | {median:>7.1f} | {limit:>7} | {met:<3} | {each}")


if __name__ == "__main__":
    main()
