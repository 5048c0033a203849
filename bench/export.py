"""Benchmark of the streamed CSV export, with the issue's targets.

Seeds ``--documents`` (default 1,000,000) documents by SQL into a throwaway database
``triaged_bench_export`` of the server at ``--url`` (migrated by the daemon itself),
then, for each run (``--runs``, default 3; a fresh ``triaged serve`` process each),
measures:

* **rows/s**: ``GET /api/v1/exports/documents.csv`` (every column, the default) over
  HTTP on loopback, from the request to the last byte, read as fast as the client can;
  every row is counted (the seeded titles hold no line breaks, so a row is a line) and
  must be there;
* **RSS growth** of the daemon: the largest ``VmRSS`` of ``/proc/<pid>/status``
  (sampled every 20 ms during the export) minus its value just before the export;
* **list p95**: ``GET /api/v1/documents?limit=20``, one request at a time on a
  keep-alive connection, 200 times on the idle daemon, then for as long as the export
  runs; p95 of each.

The table shows the median of the runs and each run's figure, beside the targets: at
least 200,000 rows/s, RSS growth under 30 MB, list p95 during the export at most
max(25 ms, 2 x idle p95). Client, daemon and PostgreSQL share this machine's cores.

    .venv/bin/python bench/export.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/ holds queue.py: the script's directory must not shadow the standard library's
# ``queue`` (which trio imports); the project root must be importable instead.
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import trio  # noqa: E402

from bench.ingest import RawHttp, free_port, with_database  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "triaged_bench_export"
IDLE_REQUESTS = 200
RSS_SAMPLE_SECONDS = 0.02
TARGET_ROWS_PER_S = 200_000.0
TARGET_RSS_MB = 30.0
TARGET_P95_FLOOR_MS = 25.0

# Every tenth title starts with a formula character: the neutralisation runs for real.
SEED = """
INSERT INTO documents (title, external_id, media_type, size_bytes, sha256,
                       state, language, category, severity, created_by, metadata,
                       created_at, updated_at, completed_at, finished_at, retain_until)
SELECT CASE WHEN g %% 10 = 0 THEN '=SUM(A' || g || ')'
            ELSE 'Checkout outage report number ' || g || ', "region" eu-west' END,
       'ext-' || g, 'text/plain', 1000 + g %% 4000,
       sha256(g::text::bytea), 'completed', 'en', 'incident',
       (ARRAY['low', 'medium', 'high', 'critical'])[1 + g %% 4], 'user:1',
       jsonb_build_object('n', g), t, t, t + interval '3 seconds', t + interval '3 seconds',
       t + interval '365 days'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
     LATERAL (SELECT now() - (%(last)s::bigint - g) * interval '1 second' AS t) AS times
"""


def recreate_database(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    return with_database(url, BENCH_DB)


def drop_database(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def seed(database: str, total: int) -> float:
    """Insert ``total`` documents in batches; seconds taken."""
    started = time.perf_counter()
    with psycopg.connect(database, autocommit=True) as conn:
        for first in range(1, total + 1, 100_000):
            last = min(total, first + 99_999)
            conn.execute(SEED, {"first": first, "last": last})
        conn.execute("VACUUM ANALYZE documents")
    return time.perf_counter() - started


class Daemon:
    """``triaged serve`` on a free port, with an initial admin password file."""

    def __init__(self, database: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password_file = workdir / "initial-admin-password"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGED_")}
        env.update(
            TRIAGED_DATABASE_URL=database,
            TRIAGED_HTTP_PORT=str(self.port),
            TRIAGED_DATA_DIR=str(workdir),
            TRIAGED_INITIAL_ADMIN_PASSWORD_FILE=str(self.password_file),
            TRIAGED_LOG_LEVEL="WARNING",
            TRIAGED_LOG_FORMAT="json",
        )
        self.log = (workdir / "triaged.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "serve"],
            env=env,
            cwd=_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self) -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(1200):
                if self.proc.poll() is not None:
                    self.log.flush()
                    output = Path(self.log.name).read_text(errors="replace")[-3000:]  # noqa: ASYNC240
                    raise SystemExit(f"triaged exited with {self.proc.returncode}:\n{output}")
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)
        raise SystemExit(f"triaged did not become ready; see {self.log.name}")

    async def api_key(self, workdir_password: Path) -> str:
        password = (await trio.Path(workdir_password).read_text()).strip()
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            login = await client.post(
                "/api/v1/auth/login",
                json={"email": "admin@triaged.localhost", "password": password},
            )
            token = login.json()["token"]
            created = await client.post(
                "/api/v1/api-keys",
                json={"name": "bench", "role": "viewer"},
                headers={"Authorization": f"Bearer {token}"},
            )
        return str(created.json()["key"])

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the daemon so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * 0.95) - 1)]


async def export(port: int, key: str, columns: str | None) -> tuple[int, int, float]:
    """The whole documents export over HTTP/1.0 (body until the connection closes):
    rows, bytes, seconds."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    path = "/api/v1/exports/documents.csv" + (f"?columns={columns}" if columns else "")
    started = time.perf_counter()
    await stream.send_all(
        b"GET " + path.encode() + b" HTTP/1.0\r\nHost: bench\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        data = await stream.receive_some(65536)
        if not data:
            raise ConnectionError("no response")
        head += data
    head, _, body = head.partition(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        raise SystemExit(f"export answered {head[:200]!r}")
    lines = body.count(b"\n")
    size = len(body)
    last = body[-1:]
    while data := await stream.receive_some(1 << 20):
        lines += data.count(b"\n")
        size += len(data)
        last = data[-1:]
    seconds = time.perf_counter() - started
    await stream.aclose()
    if last != b"\n":
        raise SystemExit("the export ended in the middle of a row")
    return lines - 1, size, seconds


async def measure(daemon: Daemon, key: str, total: int, columns: str | None) -> dict[str, float]:
    request = (
        b"GET /api/v1/documents?limit=20 HTTP/1.1\r\nHost: bench\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\n\r\n"
    )
    client = await RawHttp.connect(daemon.port)
    idle = []
    for _ in range(IDLE_REQUESTS):
        started = time.perf_counter()
        assert (await client.exchange(request))[0] == 200
        idle.append((time.perf_counter() - started) * 1000)
    busy: list[float] = []
    baseline = daemon.rss_kib()
    peak = baseline
    cpu_before = daemon.cpu_seconds()
    result: tuple[int, int, float] | None = None

    async def run_export(cancel: trio.CancelScope) -> None:
        nonlocal result
        result = await export(daemon.port, key, columns)
        cancel.cancel()

    async def sample_rss() -> None:
        nonlocal peak
        while True:
            peak = max(peak, daemon.rss_kib())
            await trio.sleep(RSS_SAMPLE_SECONDS)

    async def list_during() -> None:
        await trio.sleep(0.2)  # the export is under way
        while True:
            started = time.perf_counter()
            assert (await client.exchange(request))[0] == 200
            busy.append((time.perf_counter() - started) * 1000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_export, nursery.cancel_scope)
        nursery.start_soon(sample_rss)
        nursery.start_soon(list_during)
    cpu = daemon.cpu_seconds() - cpu_before
    await client.aclose()
    assert result is not None
    rows, size, seconds = result
    if rows != total:
        raise SystemExit(f"exported {rows} rows, expected {total}")
    return {
        "rows_per_s": rows / seconds,
        "seconds": seconds,
        "mb": size / 1e6,
        "rss_growth_mb": (peak - baseline) / 1024,
        "p95_idle": p95(idle),
        "p95_busy": p95(busy) if busy else float("nan"),
        "busy_requests": len(busy),
        "daemon_cpu": cpu,
    }


def one_run(
    database: str, total: int, key: str | None, columns: str | None
) -> tuple[dict[str, float], str]:
    """One run on a fresh process; the first (``key`` None) bootstraps the admin, makes
    the API key the later runs reuse, and seeds the documents."""
    with tempfile.TemporaryDirectory(prefix="triaged-bench-") as workdir:
        daemon = Daemon(database, Path(workdir))
        try:

            async def run() -> tuple[dict[str, float], str]:
                await daemon.ready()
                viewer = key
                if viewer is None:
                    viewer = await daemon.api_key(daemon.password_file)
                    took = await trio.to_thread.run_sync(seed, database, total)
                    print(f"seeded {total:,} documents in {took:.1f} s", file=sys.stderr)
                await trio.sleep(1)  # idle
                return await measure(daemon, viewer, total, columns), viewer

            return trio.run(run)
        finally:
            daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="a database URL on the server")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--columns", default=None, help="?columns= of the export (default all)")
    args = parser.parse_args()
    database = recreate_database(args.url)
    results = []
    key = None
    try:
        for run in range(args.runs):
            result, key = one_run(database, args.documents, key, args.columns)
            results.append(result)
            print(f"run {run + 1}: {results[-1]}", file=sys.stderr)
    finally:
        drop_database(args.url)
    idle = statistics.median(r["p95_idle"] for r in results)
    rows = [
        ("export rows/s over HTTP", "rows/s", "rows_per_s", f">= {TARGET_ROWS_PER_S:,.0f}"),
        ("export duration", "s", "seconds", "(none)"),
        ("CSV size", "MB", "mb", "(none)"),
        ("daemon RSS growth during the export", "MB", "rss_growth_mb", f"< {TARGET_RSS_MB:g}"),
        ("GET /api/v1/documents?limit=20 p95, idle", "ms", "p95_idle", "(reference)"),
        (
            "GET /api/v1/documents?limit=20 p95, during the export",
            "ms",
            "p95_busy",
            f"<= max({TARGET_P95_FLOOR_MS:g}, 2 x idle) = {max(TARGET_P95_FLOOR_MS, 2 * idle):.1f}",
        ),
        ("list requests during the export", "", "busy_requests", "(none)"),
        ("daemon CPU time during the export (all its threads)", "s", "daemon_cpu", "(none)"),
    ]
    chosen = args.columns or "every column"
    print(f"{args.documents:,} documents, {chosen}; medians of {args.runs} run(s)")
    print(f"| metric | unit | median of {args.runs} | runs | target |")
    print("|---|---|---|---|---|")
    for label, unit, key, target in rows:
        values = [r[key] for r in results]
        runs = ", ".join(f"{v:,.1f}" for v in values)
        print(f"| {label} | {unit} | {statistics.median(values):,.1f} | {runs} | {target} |")


if __name__ == "__main__":
    main()
