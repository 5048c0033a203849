"""The http poller's content hash: a large body is hashed off the event loop (in the CPU
threads, else a worker thread), a small one inline; the digest is the same either way."""

from __future__ import annotations

import hashlib
import threading

from daemon.modules.sources import http_poller
from daemon.modules.sources.http_poller import INLINE_HASH_BYTES, content_sha256
from daemon.shared.cpu_threads import CpuThreads

CPU = CpuThreads(1, name="test-http-hash")


def _recording(threads: list[int]):
    original = http_poller._sha256_hex

    def hash_and_record(data: bytes) -> str:
        threads.append(threading.get_ident())
        return original(data)

    return hash_and_record


async def test_a_large_body_is_hashed_off_the_event_loop(monkeypatch):
    threads: list[int] = []
    monkeypatch.setattr(http_poller, "_sha256_hex", _recording(threads))
    loop = threading.get_ident()
    small = b"x" * INLINE_HASH_BYTES
    large = b"y" * (4 << 20)
    assert await content_sha256(small, CPU) == hashlib.sha256(small).hexdigest()
    assert await content_sha256(large, CPU) == hashlib.sha256(large).hexdigest()
    assert await content_sha256(large, None) == hashlib.sha256(large).hexdigest()
    assert threads[0] == loop  # small: inline, not worth a thread hop
    assert loop not in threads[1:] and len(threads) == 3
