"""Benchmark of API read latency while the worker is busy, with the issue's targets.

Starts the real ``triaged`` (``--processes serve``, or e.g. ``api,worker``) on a fresh
database ``triaged_bench_ingest`` of the server at ``--url`` with the default settings and
the built-in heuristic analyzer, seeds ``--seed-documents`` (default 300) documents, most
of which open cases, then measures reads in three scenarios:

* **idle**: nothing else runs;
* **uploading**: a load process uploads documents on 16 keep-alive connections as fast as
  the service accepts them, for ``--seconds``;
* **backlog**: 5,000 documents uploaded while ``ingest.fetch`` was paused, then resumed:
  reads from the resume until the last of them is done (``docs/s``: 5,000 over that
  time), not after.

The reader is its own process: on one keep-alive connection it sends, at a steady
``--rate`` (default 25/s), in turn ``GET /api/v1/documents?limit=20``,
``GET /api/v1/cases?limit=20``, one document and one case; each latency runs from the
request's send to the end of its response; a request that would be due while the
previous one is still out waits for it (one connection, one request at a time, as a UI
polling a list would), so a stalled daemon shows as a lower achieved rate, printed too.
Beside it, ``/livez`` every 50 ms on a second connection. The daemon's
own event-loop lag (``triaged_event_loop_lag_seconds``, sampled every 50 ms) is read
from ``/metrics`` before and after each scenario.

Each run (``--runs``, default 3) uses a fresh database and process; the table shows the
median of the runs and each run's figure.

    .venv/bin/python bench/api_load.py [--processes serve|api,worker] [--runs 3]
        [--scenarios idle,uploading,backlog] [--profile DIR]

``--profile DIR`` samples each daemon process with py-spy (``pip install py-spy``; it needs
the right to ptrace the daemon) during each scenario: the thread holding the GIL
(``<scenario>-<role>-gil.txt``) and every thread (``-threads.txt``), as collapsed stacks.

``--client-cpus LIST`` runs the reader and the uploader on those CPUs only. With
PostgreSQL's processes moved there too (``taskset -apc 1 <pid>`` for each; the backends
forked later inherit the postmaster's), the daemon's loop shares its core with nobody but
the daemon's own CPU threads and worker processes (``nice`` +10): this tells the host's
share of a latency from the daemon's, as on a host whose clients are elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import trio  # noqa: E402

from bench.ingest import (  # noqa: E402
    DEFAULT_URL,
    Daemon,
    RawHttp,
    document_text,
    drop_database,
    post_request,
    recreate_database,
    stop_daemons_on_sigterm,
)

if TYPE_CHECKING:
    from collections.abc import Callable

UPLOADERS = 16
LIVEZ_INTERVAL = 0.05  # seconds between two /livez probes
DRAIN_LIMIT = 300.0  # seconds the backlog may take to drain
BACKLOG = 5000
TARGETS = {
    "uploading p95": 25.0,
    "uploading p99": 50.0,
    "idle p50": 3.0,
    "livez p99": 10.0,
}
CASE_WORDS = "ransomware breach password phishing urgent outage"


def get_request(port: int, key: str, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n\r\n"
    ).encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# -- the reader and the loader: each its own process ------------------------------------


async def read_loop(
    port: int, key: str, seconds: float, rate: float, paths: list[str], until_stdin: bool = False
) -> dict:
    """Reads and probes for ``seconds``. With ``until_stdin``: begins at a first line on
    this process's standard input and stops at the next line (or the end of the input),
    if sooner (the backlog: only while it drains)."""
    stdin = StdinLines() if until_stdin else None
    if stdin is not None and not await stdin.line():
        return {"reads": [], "livez": [], "seconds": 0.0}  # told nothing: not started
    reads = await RawHttp.connect(port)  # after the "go": an idle connection may be closed
    probes = await RawHttp.connect(port)
    read_requests = [get_request(port, key, p) for p in paths]
    livez = f"GET /livez HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    samples: list[float] = []
    livez_samples: list[float] = []
    started = trio.current_time()
    deadline = started + seconds

    async def exchanges(
        request_for: Callable[[int], bytes], connection: RawHttp, interval: float, into: list
    ) -> None:
        """One request every ``interval`` until the deadline; a request that would be
        due while the previous one is still out waits for it."""
        due, i = trio.current_time(), 0
        while True:
            await trio.sleep_until(due)
            if trio.current_time() >= deadline:
                return
            sent = trio.current_time()
            status, body = await connection.exchange(request_for(i))
            if status != 200:
                raise SystemExit(f"{request_for(i)[:40]!r} answered {status}: {body[:300]!r}")
            into.append((trio.current_time() - sent) * 1000)
            i += 1
            due = max(due + interval, trio.current_time())

    async def stop_on_stdin(stdin: StdinLines) -> None:
        nonlocal deadline
        await stdin.line()  # the next line, or the end of the input
        deadline = min(deadline, trio.current_time())

    async with trio.open_nursery() as nursery:
        if stdin is not None:
            nursery.start_soon(stop_on_stdin, stdin)
        async with trio.open_nursery() as clients:
            clients.start_soon(
                exchanges, lambda i: read_requests[i % len(read_requests)], reads, 1 / rate, samples
            )
            clients.start_soon(exchanges, lambda i: livez, probes, LIVEZ_INTERVAL, livez_samples)
        nursery.cancel_scope.cancel()
    # A request still out at the deadline was waited for and counted.
    elapsed = min(deadline, trio.current_time()) - started
    return {"reads": samples, "livez": livez_samples, "seconds": elapsed}


class StdinLines:
    """This process's standard input, a line at a time, on Trio."""

    def __init__(self) -> None:
        self.stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        self.buffer = b""

    async def line(self) -> bytes:
        """The next line, or b"" at the end of the input."""
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some()
            if not data:
                line, self.buffer = self.buffer, b""
                return line
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


async def load_loop(port: int, key: str, seconds: float, seed: int) -> dict:
    rng = random.Random(seed)
    deadline = trio.current_time() + seconds
    accepted = 0

    async def uploader(n: int) -> None:
        nonlocal accepted
        connection = await RawHttp.connect(port)
        while trio.current_time() < deadline:
            request = post_request(port, key, f"load {n}", document_text(rng))
            status, body = await connection.exchange(request)
            if status != 202:
                raise SystemExit(f"upload answered {status}: {body[:300]!r}")
            accepted += 1
        await connection.aclose()

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for n in range(UPLOADERS):
            nursery.start_soon(uploader, n)
    return {"accepted": accepted, "seconds": trio.current_time() - started}


def child(args: argparse.Namespace) -> None:
    if args.client_cpus:
        os.sched_setaffinity(0, cpu_list(args.client_cpus))
    if args.child == "reader":
        paths = json.loads(args.paths)
        result = trio.run(
            read_loop, args.port, args.key, args.seconds, args.rate, paths, args.until_stdin
        )
    else:
        result = trio.run(load_loop, args.port, args.key, args.seconds, args.seed)
    json.dump(result, sys.stdout)


def cpu_list(text: str) -> set[int]:
    """``0-2,5`` -> {0, 1, 2, 5}."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def pinned(args: argparse.Namespace) -> dict[str, str]:
    """The option a client process runs with under ``--client-cpus``."""
    return {"client-cpus": args.client_cpus} if args.client_cpus else {}


def spawn(
    kind: str, daemon: Daemon, key: str, seconds: float, until_stdin: bool = False, **extra: object
) -> subprocess.Popen:
    """A client process; ``until_stdin``: it stops early on a line on its standard input."""
    command = [sys.executable, __file__, "--child", kind, "--port", str(daemon.port)]
    command += ["--key", key, "--seconds", str(seconds)]
    for name, value in extra.items():
        command += [f"--{name}", str(value)]
    if until_stdin:
        command.append("--until-stdin")
    stdin = subprocess.PIPE if until_stdin else subprocess.DEVNULL
    return subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, cwd=_ROOT)


def collect(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"a benchmark child failed with {proc.returncode}")
    return json.loads(out)


# -- the daemon's side ---------------------------------------------------------------------


def loop_lag_buckets(daemon: Daemon) -> dict[float, float]:
    text = httpx.get(f"{daemon.url}/metrics", timeout=30).text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("triaged_event_loop_lag_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.split()[-1])
    return buckets


def lag_p99_ms(before: dict[float, float], after: dict[float, float]) -> float:
    """p99 of the lag samples taken between two scrapes (an upper bucket bound, ms)."""
    delta = {bound: after.get(bound, 0.0) - before.get(bound, 0.0) for bound in after}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return float("nan")
    for bound in sorted(delta):
        if delta[bound] >= 0.99 * total:
            return bound * 1000
    return float("inf")


def completed(database: str) -> int:
    with psycopg.connect(database, autocommit=True) as conn:
        return done_count(conn)


def scalar(conn: psycopg.Connection, query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None and row[0] is not None, query
    return row[0]


def done_count(conn: psycopg.Connection) -> int:
    return int(
        scalar(
            conn, "SELECT count(*) FROM documents WHERE state IN ('completed','duplicate','failed')"
        )
    )


def resumed_at(conn: psycopg.Connection) -> float:
    """When ``ingest.fetch`` was last paused or resumed (the commit of ``queues resume``)."""
    return float(
        scalar(
            conn, "SELECT extract(epoch FROM updated_at) FROM queues WHERE name = 'ingest.fetch'"
        )
    )


def last_completion(conn: psycopg.Connection) -> float:
    return float(scalar(conn, "SELECT extract(epoch FROM max(finished_at)) FROM documents"))


def queue_command(daemon: Daemon, database: str, action: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGED_")}
    env["TRIAGED_DATABASE_URL"] = database
    subprocess.run(
        [sys.executable, "-m", "daemon", "queues", action, "ingest.fetch"],
        env=env,
        cwd=_ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def upload(daemon: Daemon, key: str, count: int, seed: int, words: str = "") -> None:
    rng = random.Random(seed)
    send, receive = trio.open_memory_channel[bytes](count)
    for _ in range(count):
        send.send_nowait(post_request(daemon.port, key, "seed", f"{words} {document_text(rng)}"))
    send.close()

    async def poster() -> None:
        connection = await RawHttp.connect(daemon.port)
        async for request in receive:
            status, body = await connection.exchange(request)
            if status != 202:
                raise SystemExit(f"upload answered {status}: {body[:300]!r}")
        await connection.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(UPLOADERS):
            nursery.start_soon(poster)


async def wait_completed(database: str, count: int, limit: float) -> float:
    started = time.monotonic()
    while await trio.to_thread.run_sync(completed, database) < count:
        if time.monotonic() - started > limit:
            raise SystemExit(f"{count} documents did not complete within {limit} s")
        await trio.sleep(0.2)
    return time.monotonic() - started


def read_paths(database: str) -> list[str]:
    with psycopg.connect(database, autocommit=True) as conn:
        document = conn.execute("SELECT max(id) FROM documents").fetchone()
        case = conn.execute("SELECT max(id), count(*) FROM cases").fetchone()
    assert document and case and case[0], "the seed opened no case"
    print(f"  seeded; {case[1]} cases", file=sys.stderr)
    return [
        "/api/v1/documents?limit=20",
        "/api/v1/cases?limit=20",
        f"/api/v1/documents/{document[0]}",
        f"/api/v1/cases/{case[0]}",
    ]


def summarise(name: str, measured: dict, lag: float, rate: float | None) -> dict[str, float]:
    reads, livez = measured["reads"], measured["livez"]
    return {
        f"{name} p50": statistics.median(reads),
        f"{name} p95": percentile(reads, 0.95),
        f"{name} p99": percentile(reads, 0.99),
        f"{name} reads/s": len(reads) / measured["seconds"],
        f"{name} livez p99": percentile(livez, 0.99),
        f"{name} loop lag p99": lag,
        **({f"{name} docs/s": rate} if rate is not None else {}),
    }


def profile(args: argparse.Namespace, daemon: Daemon, scenario: str, seconds: float) -> None:
    """With ``--profile DIR``: py-spy samples each daemon process during the scenario, twice
    (the thread holding the GIL, ``--gil``; every thread, idle ones too, ``--idle``), as
    collapsed stacks in DIR (for flamegraph.pl, inferno or speedscope; py-spy on PATH)."""
    if not args.profile:
        return
    Path(args.profile).mkdir(parents=True, exist_ok=True)
    for role, proc in zip(args.processes.split(","), daemon.procs, strict=True):
        for view, flags in (("gil", ["--gil"]), ("threads", ["--threads", "--idle"])):
            output = Path(args.profile) / f"{scenario}-{role}-{view}.txt"
            command = ["py-spy", "record", "-p", str(proc.pid), "-d", str(int(seconds)), "-r"]
            command += ["100", "--nonblocking", "--format", "raw", "-o", str(output), *flags]
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Scenario:
    """The scenarios of one run, each a method returning its figures."""

    def __init__(
        self,
        args: argparse.Namespace,
        daemon: Daemon,
        database: str,
        key: str,
        seed: int,
        reader: dict,
    ) -> None:
        self.args, self.daemon, self.database = args, daemon, database
        self.key, self.seed, self.reader = key, seed, reader

    def idle(self) -> dict[str, float]:
        args, daemon = self.args, self.daemon
        before = loop_lag_buckets(daemon)
        profile(args, daemon, "idle", args.seconds)
        measured = collect(spawn("reader", daemon, self.key, args.seconds, **self.reader))
        return summarise("idle", measured, lag_p99_ms(before, loop_lag_buckets(daemon)), None)

    def uploading(self) -> dict[str, float]:
        """Uploads on 16 connections as fast as accepted; returns once they completed."""
        args, daemon, database = self.args, self.daemon, self.database
        done_before = completed(database)
        before = loop_lag_buckets(daemon)
        loader = spawn(
            "loader", daemon, self.key, args.seconds, seed=self.seed + 100, **pinned(args)
        )
        profile(args, daemon, "uploading", args.seconds)
        measured = collect(spawn("reader", daemon, self.key, args.seconds, **self.reader))
        loaded = collect(loader)
        lag = lag_p99_ms(before, loop_lag_buckets(daemon))
        rate = loaded["accepted"] / loaded["seconds"]
        print(f"  uploading: {rate:.0f} uploads/s accepted", file=sys.stderr)
        trio.run(wait_completed, database, done_before + loaded["accepted"], 600)
        time.sleep(2)
        return summarise("uploading", measured, lag, rate)

    def backlog(self) -> dict[str, float]:
        """5,000 documents uploaded while ``ingest.fetch`` is paused, read while they drain:
        from the resume to the last document's completion, no longer. The drain time is
        the server's: from the resume's commit to the last completion."""
        args, daemon, database = self.args, self.daemon, self.database
        total = completed(database)
        queue_command(daemon, database, "pause")
        trio.run(upload, daemon, self.key, BACKLOG, self.seed + 200, "")
        time.sleep(1)
        # Started before the resume (its interpreter's start is not timed); it reads
        # from the "go" to the "stop", and gives up on its own later than this does.
        reader = spawn(
            "reader", daemon, self.key, DRAIN_LIMIT + 30, until_stdin=True, **self.reader
        )
        with psycopg.connect(database, autocommit=True) as conn:
            queue_command(daemon, database, "resume")
            tell(reader, b"go\n")
            before = loop_lag_buckets(daemon)
            started = time.monotonic()
            profile(args, daemon, "backlog", BACKLOG / 250)  # ends after the drain: longer
            while done_count(conn) < total + BACKLOG:
                if reader.poll() is not None:
                    raise SystemExit(f"the reader exited early with {reader.returncode}")
                if time.monotonic() - started > DRAIN_LIMIT:
                    reader.kill()
                    reader.wait()
                    raise SystemExit(f"the backlog did not drain within {DRAIN_LIMIT:g} s")
                time.sleep(0.1)
            lag = lag_p99_ms(before, loop_lag_buckets(daemon))
            tell(reader, b"stop\n")
            drained = last_completion(conn) - resumed_at(conn)
        measured = collect(reader)
        print(f"  backlog: drained in {drained:.1f} s", file=sys.stderr)
        return summarise("backlog", measured, lag, BACKLOG / drained)


def tell(child: subprocess.Popen, line: bytes) -> None:
    """A line to a child's standard input (one that exited is found by ``collect``)."""
    assert child.stdin is not None
    try:
        child.stdin.write(line)
        child.stdin.flush()
    except BrokenPipeError:
        pass


def one_run(args: argparse.Namespace, seed: int) -> dict[str, float]:
    database = recreate_database(args.url)
    roles = args.processes.split(",")
    with tempfile.TemporaryDirectory(prefix="triaged-bench-") as workdir:
        extra = dict(item.split("=", 1) for item in args.env)
        daemon = Daemon(database, Path(workdir), extra, roles)
        try:
            trio.run(daemon.ready)
            key = trio.run(daemon.api_key)
            trio.run(upload, daemon, key, args.seed_documents, seed, CASE_WORDS)
            trio.run(wait_completed, database, args.seed_documents, 300)
            paths = read_paths(database)
            time.sleep(2)
            result: dict[str, float] = {}
            reader = {"rate": args.rate, "paths": json.dumps(paths), **pinned(args)}
            run = Scenario(args, daemon, database, key, seed, reader)
            for name in args.scenarios.split(","):
                result |= getattr(run, name)()
            return result
        finally:
            daemon.stop()
            drop_database(args.url)


ROWS = [
    ("idle", "reads, idle"),
    ("uploading", "reads while uploading on 16 connections"),
    ("backlog", "reads while 5,000 documents drain"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="a database URL on the server")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", default="serve", help="serve, or e.g. api,worker")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="idle and uploading (the backlog: its drain)"
    )
    parser.add_argument("--rate", type=float, default=25.0, help="reads per second")
    parser.add_argument("--seed-documents", type=int, default=300)
    parser.add_argument(
        "--scenarios", default="idle,uploading,backlog", help="which, in this order"
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a daemon setting"
    )
    parser.add_argument("--profile", metavar="DIR", help="py-spy each scenario into DIR")
    parser.add_argument(
        "--client-cpus",
        metavar="LIST",
        help="run the reading and uploading clients on these CPUs only (e.g. 1): with "
        "PostgreSQL pinned there too, the daemon's loop has a core to itself",
    )
    parser.add_argument("--child", choices=["reader", "loader"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--until-stdin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    stop_daemons_on_sigterm()
    results = []
    for run in range(args.runs):
        results.append(one_run(args, seed=run * 1000))
        print(f"run {run + 1}: {json.dumps(results[-1])}", file=sys.stderr)
    print(f"processes: {' + '.join(args.processes.split(','))}; reads at {args.rate:g}/s")
    print(
        f"| scenario | read p50 ms | read p95 ms | read p99 ms | /livez p99 ms "
        f"| loop lag p99 ms | reads/s | docs/s | median of {args.runs} |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, label in ROWS:

        def med(metric: str, name: str = name) -> str:
            values = [r[f"{name} {metric}"] for r in results if f"{name} {metric}" in r]
            return f"{statistics.median(values):,.1f}" if values else "-"

        if not any(f"{name} p95" in r for r in results):
            continue
        p95s = " / ".join(f"{r[f'{name} p95']:.1f}" for r in results)
        print(
            f"| {label} | {med('p50')} | {med('p95')} | {med('p99')} | {med('livez p99')} "
            f"| {med('loop lag p99')} | {med('reads/s')} | {med('docs/s')} "
            f"| p95 of runs: {p95s} |"
        )
    print("targets: " + ", ".join(f"{k} <= {v:g} ms" for k, v in TARGETS.items()))


if __name__ == "__main__":
    main()
