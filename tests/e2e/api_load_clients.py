"""The reader and the uploader of ``test_api_under_load_e2e.py``, each run as its own process.

    python -m tests.e2e.api_load_clients read|upload  < config (JSON)  > result (JSON)

Each runs in a process of its own so that the reader never shares an interpreter (its
GIL, its event loop, its garbage collector) with the load it measures. The config comes
on stdin (it holds the API key, which must not show in a process list); the result is
one JSON object on stdout.

* ``read``: ``{"port", "key", "seconds", "rate", "paths"}``. On one keep-alive connection,
  at a steady ``rate`` per second, the ``paths`` in turn; a request due while the previous
  one is still out waits for it (one connection, one request at a time, as a UI polling
  a list does), so a stalled daemon shows as a lower achieved rate. Beside it, ``/livez``
  every 100 ms on a second connection. Each latency (ms) runs from the request's send to
  the end of its response. Result: ``{"reads": [[sent, ms]], "livez": [[sent, ms]],
  "read_statuses": {status: n}, "livez_statuses": {status: n}, "started", "ended"}``,
  times (``sent``, ``started``, ``ended``) on ``time.monotonic()``'s clock, which every
  process of the machine shares (Linux's ``CLOCK_MONOTONIC``).
* ``upload``: ``{"port", "key", "connections", "seed"}`` and either ``"seconds"`` (upload
  for that long, as fast as accepted) or ``"count"`` (upload that many, then stop).
  Documents are 1-5 KB JSON texts, all different, many of them worded to open cases.
  Result: ``{"statuses": {status: n}, "seconds"}``.
"""

from __future__ import annotations

import gc
import json
import random
import sys
import time
from collections import Counter

import trio

from tests.e2e.raw_http import read_response

_WORDS = (
    "ransomware breach password phishing urgent outage server checkout payment refund "
    "invoice customer contract login error latency database region request feature report "
    "billing account access delete personal data privacy lawyer subpoena complaint slow "
    "broken please thanks team service incident ticket update"
)
WORDS = _WORDS.split(" ")


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time; when the server ends
    the connection (``Connection: close``, as hypercorn does after 1,000 requests), the
    next request goes on a new one, as any client does."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stream: trio.SocketStream | None = None

    async def exchange(self, request: bytes) -> int:
        """Send ``request``; the status of its response, once all of it was read."""
        if self.stream is None:
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        await self.stream.send_all(request)
        status, headers, _body = await read_response(self.stream)
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return status

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None


def get_request(port: int, path: str, key: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode()


def post_request(port: int, key: str, rng: random.Random) -> bytes:
    """A ``POST /api/v1/documents`` of 1-5 KB of triage words, unique (a random tag)."""
    size = rng.randrange(1000, 5000)
    sentences = [f"Reference {rng.randrange(10**12)}."]
    while sum(len(s) + 1 for s in sentences) < size:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(6, 16)))
        sentences.append(sentence.capitalize() + ".")
    body = json.dumps({"title": "under load", "content": " ".join(sentences)}).encode()
    return (
        f"POST /api/v1/documents HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def paced(
    connection: Connection,
    requests: list[bytes],
    interval: float,
    deadline: float,
    samples: list[tuple[float, float]],
    statuses: Counter[int],
) -> None:
    """Send ``requests`` in turn every ``interval`` s until ``deadline``, one at a time;
    ``samples`` gets (send time, latency ms) for each."""
    due, index = trio.current_time(), 0
    while due < deadline:
        await trio.sleep_until(due)
        sent, at = trio.current_time(), time.monotonic()
        statuses[await connection.exchange(requests[index % len(requests)])] += 1
        samples.append((at, (trio.current_time() - sent) * 1000))
        index += 1
        due = max(due + interval, trio.current_time())


async def read(config: dict) -> dict:
    port, key = config["port"], config["key"]
    reads, probes = Connection(port), Connection(port)
    read_requests = [get_request(port, path, key) for path in config["paths"]]
    read_samples: list[tuple[float, float]] = []
    livez_samples: list[tuple[float, float]] = []
    read_statuses: Counter[int] = Counter()
    livez_statuses: Counter[int] = Counter()
    started, started_at = trio.current_time(), time.monotonic()
    deadline = started + config["seconds"]
    async with trio.open_nursery() as nursery:
        interval = 1 / config["rate"]
        nursery.start_soon(
            paced, reads, read_requests, interval, deadline, read_samples, read_statuses
        )
        livez = [get_request(port, "/livez")]
        nursery.start_soon(paced, probes, livez, 0.1, deadline, livez_samples, livez_statuses)
    seconds = trio.current_time() - started
    await reads.aclose()
    await probes.aclose()
    return {
        "reads": read_samples,
        "livez": livez_samples,
        "read_statuses": read_statuses,
        "livez_statuses": livez_statuses,
        "started": started_at,
        "ended": started_at + seconds,
    }


async def upload(config: dict) -> dict:
    port, key = config["port"], config["key"]
    rng = random.Random(config["seed"])
    started = trio.current_time()
    deadline = started + config.get("seconds", float("inf"))
    remaining = config.get("count", -1)
    statuses: Counter[int] = Counter()

    async def uploader() -> None:
        nonlocal remaining
        connection = Connection(port)
        while remaining != 0 and trio.current_time() < deadline:
            remaining -= 1
            statuses[await connection.exchange(post_request(port, key, rng))] += 1
        await connection.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(config["connections"]):
            nursery.start_soon(uploader)
    return {"statuses": statuses, "seconds": trio.current_time() - started}


def main() -> None:
    gc.disable()  # a collection landing in a measured request would be charged to the daemon
    kind = sys.argv[1]
    config = json.load(sys.stdin)
    result = trio.run({"read": read, "upload": upload}[kind], config)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
