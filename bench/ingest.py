"""Benchmark of document ingestion through all eight steps, with the issue's targets.

Starts the real ``triaged serve`` (one process: HTTP, worker, scheduler) on a fresh
database ``triaged_bench_ingest`` of the server at ``--url``, with the default settings
and the built-in heuristic analyzer, creates an analyst API key, then measures:

* **throughput**, documents/s: ``--documents`` (default 3,000) text documents of
  1-5 KB, all different, posted as JSON over HTTP on 32 concurrent keep-alive
  connections (a minimal client, :class:`RawHttp`, with the requests prepared before
  the clock starts); from the first request to the last document's ``completed_at``
  (server clock: same host);
* **latency**, ms p50 / p95: on the idle daemon, 100 documents posted one at a time;
  from just before each POST to the document's ``completed_at`` (server clock: same
  host, same clock), each document waited for before the next is posted.

Each run (``--runs``, default 3) uses a fresh database and a fresh process; the table
shows the median of the runs and each run's figure.

    .venv/bin/python bench/ingest.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
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
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "triaged_bench_ingest"
CLIENTS = 32
LATENCY_DOCUMENTS = 100
TARGETS = {"throughput": 300.0, "p50": 100.0}

WORDS = tuple(
    [
        "outage",
        "server",
        "checkout",
        "payment",
        "refund",
        "invoice",
        "customer",
        "contract",
        "breach",
        "password",
        "ransomware",
        "phishing",
        "login",
        "error",
        "latency",
        "database",
        "region",
        "request",
        "feature",
        "report",
        "billing",
        "charge",
        "account",
        "access",
        "delete",
        "personal",
        "data",
        "privacy",
        "lawyer",
        "subpoena",
        "complaint",
        "slow",
        "broken",
        "urgent",
        "please",
        "thanks",
        "team",
        "service",
        "incident",
        "ticket",
        "update",
    ]
)


def document_text(rng: random.Random) -> str:
    """1-5 KB of sentences made of triage words, unique (a random tag in each)."""
    size = rng.randrange(1000, 5000)
    sentences = [f"Reference {rng.randrange(10**12)}."]
    length = len(sentences[0])
    while length < size:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(6, 16)))
        sentence = sentence.capitalize() + "."
        sentences.append(sentence)
        length += len(sentence) + 1
    return " ".join(sentences)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(url: str, name: str) -> str:
    return make_conninfo(**{**conninfo_to_dict(url), "dbname": name})


def recreate_database(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    return with_database(url, BENCH_DB)


def drop_database(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def stop_daemons_on_sigterm() -> None:
    """SIGTERM ends a benchmark as Ctrl-C does: through its ``finally``, which stops the
    daemons (in sessions of their own, they get no signal sent to the benchmark's)."""

    def exit_now(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_now)


class Daemon:
    """``triaged`` as the given processes: ``["serve"]`` (the default deployment), or the
    scale-out shape, e.g. ``["api", "worker"]`` (each its own process, one database)."""

    def __init__(
        self, database: str, workdir: Path, extra: dict[str, str], roles: list[str]
    ) -> None:
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
        env.update(extra)
        self.log = (workdir / "triaged.log").open("wb")
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "daemon", role],
                env=env,
                cwd=_ROOT,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                # Its own session, as systemd and Docker start it: the host's scheduler
                # then does not count the daemon and this benchmark's clients as one.
                start_new_session=True,
            )
            for role in roles
        ]
        self.proc = self.procs[0]  # serves HTTP: "serve" or "api" comes first

    async def ready(self) -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(600):
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

    async def api_key(self) -> str:
        password = (await trio.Path(self.password_file).read_text()).strip()
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            login = await client.post(
                "/api/v1/auth/login",
                json={"email": "admin@triaged.localhost", "password": password},
            )
            token = login.json()["token"]
            created = await client.post(
                "/api/v1/api-keys",
                json={"name": "bench", "role": "analyst"},
                headers={"Authorization": f"Bearer {token}"},
            )
        return str(created.json()["key"])

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log.close()


def last_completed(database: str) -> tuple[int, float | None]:
    """How many documents are done, and the server time (epoch s) of the last completion."""
    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE state IN ('completed', 'duplicate', 'failed')), "
            "extract(epoch FROM max(completed_at)) FROM documents"
        ).fetchone()
    assert row is not None
    return int(row[0]), None if row[1] is None else float(row[1])


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client on one connection.

    The load generator shares the two cores with the daemon and PostgreSQL: httpx spent
    about 2 ms of CPU per request here, which the daemon then could not use. This client
    sends prepared request bytes and reads only the status line, the headers and the
    body the Content-Length announces: about a tenth of that.
    """

    def __init__(self, stream: trio.SocketStream, port: int) -> None:
        self.stream = stream
        self.port = port
        self.buffer = b""

    @classmethod
    async def connect(cls, port: int) -> RawHttp:
        return cls(await trio.open_tcp_stream("127.0.0.1", port), port)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        await self.stream.send_all(request)
        while b"\r\n\r\n" not in self.buffer:
            await self._receive()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            await self._receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        if any(line.lower() == b"connection: close" for line in lines):
            # The server ends a keep-alive connection after so many requests (hypercorn:
            # 1,000): the next request goes on a new one, as any HTTP client does.
            await self.stream.aclose()
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            self.buffer = b""
        return status, body

    async def _receive(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise SystemExit("the daemon closed the connection")
        self.buffer += data

    async def aclose(self) -> None:
        await self.stream.aclose()


def post_request(port: int, key: str, title: str, text: str) -> bytes:
    body = json.dumps({"title": title, "content": text}).encode()
    return (
        f"POST /api/v1/documents HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def throughput(daemon: Daemon, key: str, database: str, total: int, seed: int) -> float:
    rng = random.Random(seed)
    requests = [post_request(daemon.port, key, "bench", document_text(rng)) for _ in range(total)]
    send, receive = trio.open_memory_channel[bytes](total)
    for request in requests:
        send.send_nowait(request)
    send.close()
    connections = [await RawHttp.connect(daemon.port) for _ in range(CLIENTS)]
    started = time.time()

    async def poster(connection: RawHttp) -> None:
        async for request in receive:
            status, body = await connection.exchange(request)
            if status != 202:
                raise SystemExit(f"POST answered {status}: {body[:500]!r}")

    async with trio.open_nursery() as nursery:
        for connection in connections:
            nursery.start_soon(poster, connection)
    posted = time.time() - started
    for connection in connections:
        await connection.aclose()
    while True:
        done, finished_at = await trio.to_thread.run_sync(last_completed, database)
        if done >= total:
            break
        await trio.sleep(0.1)
    with psycopg.connect(database, autocommit=True) as conn:
        states = dict(conn.execute("SELECT state::text, count(*) FROM documents GROUP BY 1"))
    if states.get("completed") != total or finished_at is None:
        raise SystemExit(f"not every document completed: {states}")
    elapsed = finished_at - started  # the daemon's clock: same host
    print(
        f"  posted {total} in {posted:.1f} s, all completed after {elapsed:.1f} s", file=sys.stderr
    )
    return total / elapsed


async def latency(daemon: Daemon, key: str, database: str, seed: int) -> list[float]:
    rng = random.Random(seed + 1)
    headers = {"Authorization": f"Bearer {key}"}
    samples = []
    with psycopg.connect(database, autocommit=True) as conn:
        async with httpx.AsyncClient(base_url=daemon.url, headers=headers, timeout=60) as client:
            for _ in range(LATENCY_DOCUMENTS):
                await trio.sleep(0.05)  # idle between documents
                text = document_text(rng)
                started = time.time()
                response = await client.post(
                    "/api/v1/documents", json={"title": "latency", "content": text}
                )
                if response.status_code != 202:
                    raise SystemExit(f"POST answered {response.status_code}: {response.text}")
                document_id = response.json()["id"]
                while True:
                    row = conn.execute(
                        "SELECT extract(epoch FROM completed_at) FROM documents WHERE id = %s",
                        (document_id,),
                    ).fetchone()
                    if row and row[0] is not None:
                        samples.append((float(row[0]) - started) * 1000)
                        break
                    await trio.sleep(0.002)
    return samples


def one_run(
    url: str, total: int, seed: int, extra: dict[str, str], roles: list[str]
) -> dict[str, float]:
    database = recreate_database(url)
    with tempfile.TemporaryDirectory(prefix="triaged-bench-") as workdir:
        daemon = Daemon(database, Path(workdir), extra, roles)
        try:

            async def measure() -> dict[str, float]:
                await daemon.ready()
                key = await daemon.api_key()
                docs_per_s = await throughput(daemon, key, database, total, seed)
                await trio.sleep(2)  # let the daemon go idle
                samples = sorted(await latency(daemon, key, database, seed))
                return {
                    "throughput": docs_per_s,
                    "p50": statistics.median(samples),
                    "p95": samples[int(len(samples) * 0.95) - 1],
                }

            return trio.run(measure)
        finally:
            daemon.stop()
            drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="a database URL on the server")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TRIAGED_X=value",
        help="a setting for the daemon (default: the defaults)",
    )
    parser.add_argument(
        "--processes",
        default="serve",
        help="comma-separated roles, HTTP first: serve (default) or e.g. api,worker",
    )
    args = parser.parse_args()
    stop_daemons_on_sigterm()
    extra = dict(item.split("=", 1) for item in args.set)
    roles = args.processes.split(",")
    results = []
    for run in range(args.runs):
        results.append(one_run(args.url, args.documents, seed=run, extra=extra, roles=roles))
        print(f"run {run + 1}: {results[-1]}", file=sys.stderr)
    rows = [
        ("throughput, 8 steps, 1-5 KB text via HTTP", "docs/s", "throughput", ">= 300"),
        ("upload -> completed, idle daemon, p50", "ms", "p50", "< 100"),
        ("upload -> completed, idle daemon, p95", "ms", "p95", "(none)"),
    ]
    print(f"processes: {' + '.join(roles)}")
    print(f"| metric | unit | median of {args.runs} | runs | target |")
    print("|---|---|---|---|---|")
    for label, unit, key, target in rows:
        values = [r[key] for r in results]
        runs = ", ".join(f"{v:,.1f}" for v in values)
        print(f"| {label} | {unit} | {statistics.median(values):,.1f} | {runs} | {target} |")


if __name__ == "__main__":
    main()
