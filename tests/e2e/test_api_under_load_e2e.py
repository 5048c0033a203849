"""API reads stay responsive while ``triaged serve`` ingests: a guard, not a benchmark.

The real ``triaged serve`` (HTTP, worker and scheduler in one process; the heuristic
analyzer) is seeded with documents, then a reader in its own process (see
``api_load_clients.py``) reads on one keep-alive connection at a steady
:data:`READ_RATE` per second, alternating ``GET /api/v1/documents?limit=20`` and
``GET /api/v1/cases?limit=20``, with ``/livez`` every 100 ms on a second connection, in
three phases:

* **idle**: nothing else runs;
* **uploading**: a load process uploads documents on :data:`UPLOADERS` connections as
  fast as they are accepted;
* **backlog**: :data:`BACKLOG` documents uploaded while ``ingest.fetch`` was paused
  (``triaged queues pause``), then resumed: the figures are those of the reads sent
  until no document was left to drain (polled in the database), which must take at
  least :data:`MIN_BACKLOG_SECONDS`, or the phase proves nothing.

Under load, the reads' p95 must stay within :data:`SLOWDOWN` times the idle p95 or
:data:`READ_FLOOR_MS`, whichever is larger, and ``/livez``'s p99 within :data:`SLOWDOWN`
times its idle p99 or :data:`LIVEZ_FLOOR_MS`; the reader must keep at least half its
rate, and every read must answer 200. The failure message shows every figure. The
precise figures, and the issue's targets, are ``bench/api_load.py``'s.
"""

from __future__ import annotations

import json
import sys
import time

import psycopg
import pytest
import trio

from tests.e2e.process import ROOT, analyst_key, base_env

pytestmark = pytest.mark.e2e

READ_RATE = 20.0  # reads per second, on one connection
READ_PATHS = ["/api/v1/documents?limit=20", "/api/v1/cases?limit=20"]
SEED_DOCUMENTS = 100
UPLOADERS = 8
IDLE_SECONDS = 5.0
UPLOADING_SECONDS = 8.0
BACKLOG = 3000
BACKLOG_SECONDS = 6.0  # at most: the figures count the reads sent until it drained
MIN_BACKLOG_SECONDS = 2.0  # of reads before it drained, or the phase proves nothing
SLOWDOWN = 5.0  # loaded p95 (p99 for /livez) at most this many times idle ...
READ_FLOOR_MS = 60.0  # ... or this, whichever is larger
LIVEZ_FLOOR_MS = 50.0
MIN_RATE_SHARE = 0.5  # of READ_RATE, achieved in every phase
DONE = "state IN ('completed', 'duplicate', 'failed')"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (as ``bench/api_load.py``); NaN (failing every bound) when
    there is no value."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def client(kind: str, config: dict) -> dict:
    """Run ``api_load_clients.py`` ``kind`` in its own process; its result."""
    done = await trio.run_process(
        [sys.executable, "-m", "tests.e2e.api_load_clients", kind],
        stdin=json.dumps(config).encode(),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=ROOT,
        env=base_env(),
    )
    assert done.returncode == 0, f"the {kind} client failed:\n{done.stderr.decode()}"
    return dict(json.loads(done.stdout))


def count_documents(database_url: str, where: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM documents WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


async def wait_drained(database_url: str, timeout: float) -> None:
    with trio.fail_after(timeout):
        while await trio.to_thread.run_sync(count_documents, database_url, f"NOT ({DONE})"):
            await trio.sleep(0.2)


async def queues(database_url: str, action: str) -> None:
    """``triaged queues ACTION ingest.fetch``, as an operator would run it."""
    env = base_env(TRIAGED_DATABASE_URL=database_url, TRIAGED_LOG_LEVEL="WARNING")
    done = await trio.run_process(
        [sys.executable, "-m", "daemon", "queues", action, "ingest.fetch"],
        env=env,
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()


async def watch_backlog(database_url: str, drained: list[float]) -> None:
    """Append to ``drained`` the time (``time.monotonic()``) when no document is left to
    drain, polled at 4/s."""
    while await trio.to_thread.run_sync(count_documents, database_url, f"NOT ({DONE})"):
        await trio.sleep(0.25)
    drained.append(time.monotonic())


def figures(measured: dict, until: float = float("inf")) -> dict[str, float]:
    """The reader's figures over its samples sent before ``until`` (``time.monotonic()``)."""
    end = min(until, measured["ended"])
    reads = [ms for sent, ms in measured["reads"] if sent < end]
    livez = [ms for sent, ms in measured["livez"] if sent < end]
    return {
        "p50": percentile(reads, 0.50),
        "p95": percentile(reads, 0.95),
        "p99": percentile(reads, 0.99),
        "reads/s": len(reads) / max(end - measured["started"], 1e-9),
        "livez p99": percentile(livez, 0.99),
        "seconds": end - measured["started"],
    }


def describe(name: str, figure: dict[str, float], extra: str = "") -> str:
    return (
        f"{name:>9}: reads p50 {figure['p50']:.1f} / p95 {figure['p95']:.1f} / p99 "
        f"{figure['p99']:.1f} ms at {figure['reads/s']:.1f} reads/s over "
        f"{figure['seconds']:.1f} s; /livez p99 {figure['livez p99']:.1f} ms{extra}"
    )


async def test_reads_under_load_are_not_grossly_slower_than_idle(
    start_triaged, tmp_path, database_url
):
    password_file = tmp_path / "initial-admin-password"
    triaged = start_triaged(
        "serve",
        TRIAGED_INITIAL_ADMIN_PASSWORD_FILE=str(password_file),
        TRIAGED_LOG_LEVEL="WARNING",
    )
    with trio.fail_after(150):
        await triaged.wait_ready()
        key = await analyst_key(triaged.url, password_file)
        reader = {"port": triaged.port, "key": key, "rate": READ_RATE, "paths": READ_PATHS}
        uploader = {"port": triaged.port, "key": key, "connections": UPLOADERS}

        async def read(seconds: float) -> dict:
            return await client("read", reader | {"seconds": seconds})

        await client("upload", uploader | {"count": SEED_DOCUMENTS, "seed": 1})
        await wait_drained(database_url, 60)
        await trio.sleep(1)
        idle = await read(IDLE_SECONDS)

        loaded: dict = {}

        async def load() -> None:
            # Longer than the reads, which start once the uploads run.
            config = uploader | {"seconds": UPLOADING_SECONDS + 1.5, "seed": 2}
            loaded.update(await client("upload", config))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(load)
            await trio.sleep(0.75)
            uploading = await read(UPLOADING_SECONDS)

        await queues(database_url, "pause")
        queued = await client("upload", uploader | {"count": BACKLOG, "seed": 3})
        pending = await trio.to_thread.run_sync(count_documents, database_url, f"NOT ({DONE})")
        await queues(database_url, "resume")
        drained: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_backlog, database_url, drained)
            backlog = await read(BACKLOG_SECONDS)
            nursery.cancel_scope.cancel()

    idle_f, uploading_f = figures(idle), figures(uploading)
    backlog_f = figures(backlog, until=drained[0] if drained else float("inf"))
    uploads_per_s = loaded["statuses"].get("202", 0) / loaded["seconds"]
    read_limit = max(SLOWDOWN * idle_f["p95"], READ_FLOOR_MS)
    livez_limit = max(SLOWDOWN * idle_f["livez p99"], LIVEZ_FLOOR_MS)
    min_rate = MIN_RATE_SHARE * READ_RATE
    drain_note = (
        f"drained {pending} documents in {drained[0] - backlog['started']:.1f} s"
        if drained
        else f"{pending} documents, not drained after {BACKLOG_SECONDS:g} s"
    )
    report = "\n".join(
        [
            describe("idle", idle_f, f" ({SEED_DOCUMENTS} documents seeded)"),
            describe("uploading", uploading_f, f"; {uploads_per_s:.0f} uploads/s accepted"),
            describe(
                "backlog",
                backlog_f,
                f"; {drain_note} (uploaded while paused in {queued['seconds']:.1f} s); "
                "figures until drained",
            ),
            f"   limits: reads p95 <= {read_limit:.1f} ms, /livez p99 <= {livez_limit:.1f} ms "
            f"(max({SLOWDOWN:g} x idle, floors {READ_FLOOR_MS:g} / {LIVEZ_FLOOR_MS:g} ms)), "
            f">= {min_rate:g} reads/s",
            f" statuses: reads {idle['read_statuses']} / {uploading['read_statuses']} / "
            f"{backlog['read_statuses']}, /livez {idle['livez_statuses']} / "
            f"{uploading['livez_statuses']} / {backlog['livez_statuses']}, uploads "
            f"{loaded['statuses']} / backlog {queued['statuses']}",
        ]
    )
    print(f"\n{report}")

    failures = []
    for name, measured in (("idle", idle), ("uploading", uploading), ("backlog", backlog)):
        for kind in ("read_statuses", "livez_statuses"):
            if set(measured[kind]) != {"200"}:
                failures.append(f"{name}: not every {kind.split('_')[0]} answered 200")
    for name, statuses in (("uploading", loaded), ("backlog", queued)):
        if set(statuses["statuses"]) != {"202"}:
            failures.append(f"{name}: not every upload answered 202")
    if backlog_f["seconds"] < MIN_BACKLOG_SECONDS:
        failures.append(
            f"backlog: drained after {backlog_f['seconds']:.1f} s of reads, under "
            f"{MIN_BACKLOG_SECONDS:g} s: too few reads under load (raise BACKLOG)"
        )
    for name, figure in (("idle", idle_f), ("uploading", uploading_f), ("backlog", backlog_f)):
        if not figure["reads/s"] >= min_rate:
            failures.append(f"{name}: {figure['reads/s']:.1f} reads/s < {min_rate:g}")
    for name, figure in (("uploading", uploading_f), ("backlog", backlog_f)):
        if not figure["p95"] <= read_limit:
            failures.append(f"{name}: reads p95 {figure['p95']:.1f} ms > {read_limit:.1f} ms")
        if not figure["livez p99"] <= livez_limit:
            failures.append(
                f"{name}: /livez p99 {figure['livez p99']:.1f} ms > {livez_limit:.1f} ms"
            )
    assert not failures, "\n".join(["reads under load:", *failures, report])
