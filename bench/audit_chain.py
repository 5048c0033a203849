"""Benchmark: the cost of the audit log's hash chain (migration 0013).

Every audit insert takes the chain head's row lock and holds it until its transaction
commits, so audited transactions serialize from their audit insert to their commit.
This measures audited transactions per second (each: one ``record`` of the audit module,
then an optional ``pg_sleep`` standing for work done after the event, then COMMIT) with
1 and 8 concurrent writers, with the chain (as shipped) and without it (the chain
trigger disabled, the chain columns nullable: the log as it was before 0013), on a
scratch database it creates and drops.

    .venv/bin/python bench/audit_chain.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

# bench/queue.py would shadow the standard library's ``queue`` (see that file).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import psycopg  # noqa: E402
import trio  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

from daemon.modules.audit import AuditContext, record  # noqa: E402
from daemon.shared.db import migrate, open_pool  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SECONDS = 3.0
SYSTEM = AuditContext.system()


async def measure(pool, writers: int, after_ms: float) -> float:
    done = 0
    deadline = time.monotonic() + SECONDS

    async def writer() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            async with pool.transaction() as conn:
                await record(conn, SYSTEM, "bench.event", details={"n": done})
                if after_ms:
                    await conn.execute("SELECT pg_sleep(%s)", (after_ms / 1000,))
            done += 1

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for _ in range(writers):
            nursery.start_soon(writer)
    return done / (time.monotonic() - started)


async def scenarios(url: str) -> dict[tuple[int, float], float]:
    async with open_pool(url, max_size=8) as pool:
        return {
            (writers, after): await measure(pool, writers, after)
            for writers in (1, 8)
            for after in (0.0, 2.0)
        }


async def main(url: str) -> None:
    name = f"triaged_bench_chain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    target = make_conninfo(**{**conninfo_to_dict(url), "dbname": name})
    try:
        async with open_pool(target, max_size=2) as pool:
            await migrate.apply(pool)
        chained = await scenarios(target)
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_chain")
            conn.execute(
                "ALTER TABLE audit_events ALTER seq DROP NOT NULL, "
                "ALTER prev_hash DROP NOT NULL, ALTER hash DROP NOT NULL"
            )
        plain = await scenarios(target)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    header = ("writers", "work after event", "no chain tx/s", "chain tx/s", "ratio")
    print("{:>7} {:>17} {:>14} {:>11} {:>6}".format(*header))
    for (writers, after), rate in chained.items():
        base = plain[writers, after]
        print(f"{writers:>7} {after:>15g}ms {base:>14.0f} {rate:>11.0f} {rate / base:>6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    trio.run(main, parser.parse_args().url)
