"""The daemon speaks sd_notify to a (fake) service manager over $NOTIFY_SOCKET."""

from __future__ import annotations

import signal
import socket
import time

import pytest
import trio

pytestmark = pytest.mark.e2e


async def test_ready_watchdog_and_stopping_reach_the_notify_socket(start_triaged, tmp_path):
    address = str(tmp_path / "notify.sock")
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(address)
    manager.setblocking(False)
    messages: list[tuple[float, str]] = []

    async def collect(until: float) -> None:
        while time.monotonic() < until:
            try:
                messages.append((time.monotonic(), manager.recv(4096).decode()))
            except BlockingIOError:
                await trio.sleep(0.01)

    try:
        # WATCHDOG_USEC=1s: pings every 0.5 s. No WATCHDOG_PID: the variable is for us.
        triaged = start_triaged("serve", NOTIFY_SOCKET=address, WATCHDOG_USEC="1000000")
        await triaged.wait_ready()
        await collect(time.monotonic() + 1.6)
        triaged.signal(signal.SIGTERM)
        assert await triaged.wait_exit(timeout=10) == 0
        await collect(time.monotonic() + 0.2)
    finally:
        manager.close()
    texts = [text for _, text in messages]
    fields = [line for text in texts for line in text.split("\n")]
    assert "READY=1" in fields
    assert any(line.startswith("STATUS=") for line in fields)
    assert "STOPPING=1" in fields
    pings = [at for at, text in messages if text == "WATCHDOG=1"]
    assert len(pings) >= 3
    ready_index = next(i for i, t in enumerate(texts) if "READY=1" in t.split("\n"))
    stopping_index = next(i for i, t in enumerate(texts) if "STOPPING=1" in t.split("\n"))
    assert ready_index < stopping_index
