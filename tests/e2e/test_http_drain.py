"""SIGTERM drains in-flight requests; a second signal stops at once; idle clients never delay."""

from __future__ import annotations

import contextlib
import signal
import sys
import time

import pytest
import trio

from tests.e2e.process import ROOT
from tests.e2e.raw_http import get, slow_post

pytestmark = pytest.mark.e2e

LAUNCHER = [sys.executable, str(ROOT / "tests" / "e2e" / "slow_route_launcher.py")]


async def test_sigterm_lets_five_slow_requests_finish_and_refuses_new_connections(start_triaged):
    pre_stop = 0.5
    triaged = start_triaged(
        "serve", launcher=LAUNCHER, TRIAGED_PRE_STOP_DELAY_SECONDS=str(pre_stop)
    )
    await triaged.wait_ready()
    results: list[tuple[int, dict]] = []
    finished_at: list[float] = []

    async def client() -> None:
        results.append(await slow_post(triaged.port, seconds=3.0))
        finished_at.append(time.monotonic())

    # An idle keep-alive client is connected throughout: it must not delay anything.
    idle = await trio.open_tcp_stream("127.0.0.1", triaged.port)
    idle_status, _, _ = await get(idle, "/livez")
    assert idle_status == 200
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(client)
        await trio.sleep(0.5)
        signalled = trio.current_time()
        triaged.signal(signal.SIGTERM)
        # During the pre-stop delay the listener is open and readiness says draining.
        stream = await trio.open_tcp_stream("127.0.0.1", triaged.port)
        async with stream:
            status, _, body = await get(stream, "/readyz")
        assert status == 503
        assert b"draining" in body
        await trio.sleep_until(signalled + pre_stop + 0.8)  # the requests need 1.7 s more
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", triaged.port)

    assert results == [(200, {"bytes": 1000})] * 5
    code = await triaged.wait_exit(timeout=5)
    exited_at = time.monotonic()
    assert code == 0, triaged.output()
    assert exited_at - max(finished_at) < 3.0  # not held by the idle client (keep-alive 5 s)
    assert await idle.receive_some(1) == b""  # the server closed the idle connection
    await idle.aclose()


async def test_idle_keep_alive_connection_does_not_delay_shutdown(start_triaged):
    triaged = start_triaged("serve", TRIAGED_HTTP_KEEP_ALIVE_SECONDS="30")
    await triaged.wait_ready()
    stream = await trio.open_tcp_stream("127.0.0.1", triaged.port)
    async with stream:
        status, headers, _ = await get(stream, "/livez")
        assert status == 200
        assert headers.get("connection", "keep-alive").lower() != "close"
        await trio.sleep(0.2)  # the connection is now idle, kept alive by the client
        signalled = time.monotonic()
        triaged.signal(signal.SIGTERM)
        code = await triaged.wait_exit(timeout=10)
        assert code == 0, triaged.output()
        assert time.monotonic() - signalled < 5.0  # not the 30 s keep-alive


async def test_idle_keep_alive_connection_is_closed_after_the_timeout(start_triaged):
    triaged = start_triaged("serve", TRIAGED_HTTP_KEEP_ALIVE_SECONDS="1")
    await triaged.wait_ready()
    stream = await trio.open_tcp_stream("127.0.0.1", triaged.port)
    async with stream:
        status, _, _ = await get(stream, "/livez")
        assert status == 200
        opened = time.monotonic()
        with trio.fail_after(5):
            closed = await stream.receive_some(1)
        assert closed == b""  # the server closed the idle connection
        assert 0.8 < time.monotonic() - opened < 4.0


async def test_second_signal_stops_at_once_with_128_plus_signal(start_triaged):
    triaged = start_triaged("serve", launcher=LAUNCHER, TRIAGED_HTTP_GRACE_SECONDS="30")
    await triaged.wait_ready()
    async with trio.open_nursery() as nursery:

        async def client() -> None:
            # The forced stop closes the connection without a response.
            with contextlib.suppress(EOFError, OSError, trio.BrokenResourceError):
                await slow_post(triaged.port, seconds=5.0)

        nursery.start_soon(client)
        await trio.sleep(0.3)
        triaged.signal(signal.SIGTERM)
        await trio.sleep(0.3)
        assert triaged.proc.poll() is None  # still draining the slow request
        signalled = time.monotonic()
        triaged.signal(signal.SIGTERM)
        code = await triaged.wait_exit(timeout=5)
        assert time.monotonic() - signalled < 3.0  # not the slow request's 4.4 s left
        nursery.cancel_scope.cancel()
    assert code == 128 + signal.SIGTERM


async def test_request_past_the_http_grace_is_cut_and_exit_status_is_1(start_triaged):
    triaged = start_triaged("serve", launcher=LAUNCHER, TRIAGED_HTTP_GRACE_SECONDS="0.5")
    await triaged.wait_ready()
    outcome: list[object] = []

    async def client() -> None:
        try:
            outcome.append(await slow_post(triaged.port, seconds=4.0))
        except (EOFError, OSError, trio.BrokenResourceError) as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client)
        await trio.sleep(0.3)
        triaged.signal(signal.SIGTERM)
        code = await triaged.wait_exit(timeout=5)
    assert code == 1
    assert len(outcome) == 1
    assert isinstance(outcome[0], (EOFError, OSError, trio.BrokenResourceError))
    assert any(r.get("action") == "supervisor.deadline" for r in triaged.log_records())


async def _stuff_unread_responses(port: int) -> trio.SocketStream:
    """Pipeline requests and never read: the server ends up blocked sending to us."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    request = b"GET /livez HTTP/1.1\r\nHost: test\r\n\r\n" * 1000
    with trio.move_on_after(2):
        while True:
            await stream.send_all(request)
    return stream


async def test_a_client_that_stops_reading_cannot_block_the_drain(start_triaged):
    triaged = start_triaged("serve", TRIAGED_HTTP_GRACE_SECONDS="1")
    await triaged.wait_ready()
    stream = await _stuff_unread_responses(triaged.port)
    async with stream:
        signalled = time.monotonic()
        triaged.signal(signal.SIGTERM)
        code = await triaged.wait_exit(timeout=10)
    assert code == 1  # the grace deadline cut that client off
    assert time.monotonic() - signalled < 5.0  # the 1 s grace, not a hang


async def test_a_client_that_stops_reading_cannot_block_the_second_signal(start_triaged):
    triaged = start_triaged("serve", TRIAGED_HTTP_GRACE_SECONDS="30")
    await triaged.wait_ready()
    stream = await _stuff_unread_responses(triaged.port)
    async with stream:
        triaged.signal(signal.SIGTERM)
        await trio.sleep(0.3)
        signalled = time.monotonic()
        triaged.signal(signal.SIGTERM)
        code = await triaged.wait_exit(timeout=10)
    assert code == 128 + signal.SIGTERM
    assert time.monotonic() - signalled < 5.0  # not the 30 s grace
