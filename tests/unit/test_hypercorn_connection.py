"""triaged's hypercorn connection classes: a response in one write, no schedule point to
take a free send lock or stop an idle timer, ``GET /livez`` answered in the reading task.
These tests drive hypercorn's own code paths (0.18), so they fail if an upgrade moves the
internals the subclasses rely on."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import h11
import hypercorn.protocol
import hypercorn.trio.run
import pytest
import trio
import trio.testing
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.events import Body, EndBody, Response
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.worker_context import WorkerContext

from daemon.api.hypercorn_connection import (
    LINGER_SECONDS,
    Http11Protocol,
    TcpConnection,
    install,
)
from tests.schedule_points import StepsOf


class _Recorder:
    """Stands for the connection's socket writer (``protocol.send``) or stream."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def send(self, event: object) -> None:  # the protocol's ``send``
        assert isinstance(event, RawData)
        self.writes.append(event.data)

    on_write: Callable[[], object] | None = None

    async def send_all(self, data: bytes) -> None:  # the TCP server's stream; no checkpoint
        if self.on_write is not None:
            self.on_write()
        self.writes.append(bytes(data))

    # the rest of a stream, for the close: what the client sends comes from ``incoming``
    incoming: trio.MemoryReceiveChannel[bytes] | None = None
    eof_sent = closed = False

    async def receive_some(self, max_bytes: int) -> bytes:
        assert self.incoming is not None
        return await self.incoming.receive()

    async def send_eof(self) -> None:
        self.eof_sent = True

    async def aclose(self) -> None:
        self.closed = True


class _Protocol:
    """Stands for the protocol the connection feeds (hypercorn's ``ProtocolWrapper`` and
    the HTTP/1.1 protocol in it); keeps the bytes it is given."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.sending = True  # the client is in the middle of its request
        self.protocol = self

    def client_may_be_sending(self) -> bool:
        return self.sending

    async def handle(self, event: object) -> None:
        if isinstance(event, RawData):
            self.received.append(event.data)


def _protocol_after(request: bytes, *, whole: bool = True) -> tuple[Http11Protocol, _Recorder]:
    recorder = _Recorder()
    protocol = Http11Protocol(
        None, Config(), WorkerContext(None), None, {}, False, None, None, recorder.send
    )
    protocol.connection.receive_data(request)
    protocol.connection.next_event()  # the request
    if whole:
        protocol.connection.next_event()  # its end
    return protocol, recorder


def test_install_makes_hypercorn_build_them() -> None:
    install()
    assert hypercorn.protocol.H11Protocol is Http11Protocol
    assert hypercorn.trio.run.TCPServer is TcpConnection
    wrapper = ProtocolWrapper(
        None, Config(), WorkerContext(None), None, {}, False, None, None, _Recorder().send
    )
    assert type(wrapper.protocol) is Http11Protocol  # what hypercorn builds per connection


async def test_an_informational_response_is_not_held() -> None:
    protocol, recorder = _protocol_after(
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        whole=False,
    )
    await protocol._send_h11_event(h11.InformationalResponse(status_code=100, headers=[]))
    [write] = recorder.writes
    assert write.startswith(b"HTTP/1.1 100 ")


def test_the_client_may_be_sending_until_its_request_is_whole() -> None:
    head = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n"
    protocol, _ = _protocol_after(head, whole=False)
    assert protocol.client_may_be_sending()  # in its body
    protocol.connection.receive_data(b"hello")
    protocol.connection.next_event()  # the body
    protocol.connection.next_event()  # its end
    assert not protocol.client_may_be_sending()


async def test_an_in_memory_response_is_one_write() -> None:
    protocol, recorder = _protocol_after(b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n")
    await protocol.stream_send(
        Response(stream_id=1, headers=[(b"content-length", b"2")], status_code=200)
    )
    assert recorder.writes == []  # the head waits for the body
    await protocol.stream_send(Body(stream_id=1, data=b"ok"))
    await protocol.stream_send(EndBody(stream_id=1))  # nothing left to write: no write
    [write] = recorder.writes
    assert write.startswith(b"HTTP/1.1 200 ")
    assert write.endswith(b"\r\n\r\nok")


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
async def test_a_response_without_body_bytes_goes_out_at_its_end(method: bytes) -> None:
    protocol, recorder = _protocol_after(method + b" /x HTTP/1.1\r\nHost: t\r\n\r\n")
    status, length = (204, b"0") if method == b"GET" else (200, b"5")
    await protocol.stream_send(
        Response(stream_id=1, headers=[(b"content-length", length)], status_code=status)
    )
    await protocol.stream_send(EndBody(stream_id=1))
    [write] = recorder.writes
    assert write.startswith(f"HTTP/1.1 {status} ".encode())
    assert write.endswith(b"\r\n\r\n")


async def test_a_streamed_body_sends_its_head_with_the_first_chunk() -> None:
    protocol, recorder = _protocol_after(b"GET /export HTTP/1.1\r\nHost: t\r\n\r\n")
    await protocol.stream_send(Response(stream_id=1, headers=[], status_code=200))  # chunked
    await protocol.stream_send(Body(stream_id=1, data=b"a,b\r\n"))
    await protocol.stream_send(Body(stream_id=1, data=b"1,2\r\n"))
    await protocol.stream_send(EndBody(stream_id=1))
    head_and_first, second, end = recorder.writes
    assert head_and_first.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head_and_first.lower()
    assert head_and_first.endswith(b"\r\n\r\n5\r\na,b\r\n\r\n")
    assert second == b"5\r\n1,2\r\n\r\n"
    assert end == b"0\r\n\r\n"


def _connection() -> tuple[TcpConnection, _Recorder]:
    stream = _Recorder()
    connection = TcpConnection(None, Config(), WorkerContext(None), {}, stream)
    connection.protocol = _Protocol()  # type: ignore[assignment]
    return connection, stream


async def test_a_write_on_a_free_send_lock_makes_no_schedule_point() -> None:
    connection, stream = _connection()
    steps = StepsOf(trio.lowlevel.current_task())
    yields_before_write: list[int] = []
    stream.on_write = lambda: yields_before_write.append(steps.ended)
    trio.lowlevel.add_instrument(steps)
    try:
        await connection.protocol_send(RawData(data=b"hello"))
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert stream.writes == [b"hello"]
    assert yields_before_write == [0]
    assert not connection.send_lock.locked()


async def test_a_write_still_waits_for_a_held_send_lock() -> None:
    connection, stream = _connection()
    async with trio.open_nursery() as nursery:
        await connection.send_lock.acquire()
        nursery.start_soon(connection.protocol_send, RawData(data=b"second"))
        await trio.testing.wait_all_tasks_blocked()
        assert stream.writes == []
        stream.writes.append(b"first")
        connection.send_lock.release()
    assert stream.writes == [b"first", b"second"]


async def test_the_idle_timer_stops_without_a_schedule_point() -> None:
    connection, _ = _connection()
    stopped = trio.Event()

    async def timer() -> None:
        try:
            await trio.sleep_forever()
        finally:
            stopped.set()

    with trio.fail_after(5):  # a timer left running would hold the task group open
        async with TaskGroup() as task_group:
            await connection.idle_task.restart(task_group, timer)
            await trio.testing.wait_all_tasks_blocked()  # the timer is running
            with trio.testing.assert_no_checkpoints():
                await connection.protocol_send(Updated(idle=False))
    assert stopped.is_set()  # the task group could only close once the timer was cancelled


async def test_the_idle_timer_restarts_without_a_schedule_point() -> None:
    connection, _ = _connection()
    ran: list[str] = []

    async def timer(name: str) -> None:
        ran.append(f"{name} started")
        try:
            await trio.sleep_forever()
        finally:
            ran.append(f"{name} ended")

    with trio.fail_after(5):  # a timer left running would hold the task group open
        async with TaskGroup() as task_group:
            with trio.testing.assert_no_checkpoints():
                await connection.idle_task.restart(task_group, partial(timer, "first"))
            await trio.testing.wait_all_tasks_blocked()
            # As a response ends: hypercorn's own call, with the connection's timer.
            connection._task_group = task_group
            connection._idle_timeout = partial(timer, "second")  # type: ignore[method-assign]
            with trio.testing.assert_no_checkpoints():
                await connection.protocol_send(Updated(idle=True))
            await trio.testing.wait_all_tasks_blocked()
            # The first ends and the second starts in the same pass, in either order.
            assert sorted(ran) == ["first ended", "first started", "second started"]
            await connection.idle_task.stop()
    assert ran[-1] == "second ended"  # the task group could only close once it ended


async def test_an_idle_timer_stopped_before_its_first_step_does_not_close() -> None:
    connection, _ = _connection()
    closed = trio.Event()

    async def timer() -> None:  # as hypercorn's: wait out the timeout, then close
        with trio.move_on_after(0):
            await trio.sleep_forever()
        closed.set()

    with trio.fail_after(5):  # a timer left running would hold the task group open
        async with TaskGroup() as task_group:
            await connection.idle_task.restart(task_group, timer)
            await connection.idle_task.stop()  # in the same step: the timer has not run yet
    assert not closed.is_set()


async def test_the_reading_loop_hands_the_client_bytes_to_the_protocol() -> None:
    connection, stream = _connection()
    send, stream.incoming = trio.open_memory_channel[bytes](3)
    for data in (b"GET / HTTP/1.1\r\n", b"Host: t\r\n\r\n", b""):
        send.send_nowait(data)
    await connection._read_data()
    received = connection.protocol.received  # type: ignore[attr-defined]
    assert received == [b"GET / HTTP/1.1\r\n", b"Host: t\r\n\r\n", b""]


async def _reading(connection: TcpConnection, task_group: TaskGroup) -> None:
    """Start the connection's reading task, as its ``run`` does."""
    connection._task_group = task_group
    task_group.spawn(connection._read_data)
    await trio.testing.wait_all_tasks_blocked()


async def test_closed_mid_request_it_drains_the_client_without_holding_the_caller() -> None:
    connection, stream = _connection()
    send, stream.incoming = trio.open_memory_channel[bytes](0)
    async with TaskGroup() as task_group:
        await _reading(connection, task_group)
        with trio.testing.assert_no_checkpoints():  # the app's last send does not wait
            await connection.protocol_send(Closed())  # e.g. after a 413, the body unread
        assert stream.eof_sent  # half-closed: the client sees the answer end
        assert not stream.closed
        await send.send(b"more of the refused body")  # read and dropped
        await trio.testing.wait_all_tasks_blocked()
        assert not stream.closed
        await send.send(b"")  # the client is done
    assert stream.closed
    assert connection.protocol.received == []  # type: ignore[attr-defined]  # never buffered


async def test_the_drain_ends_after_the_linger_time(autojump_clock: object) -> None:
    connection, stream = _connection()
    _send, stream.incoming = trio.open_memory_channel[bytes](0)
    async with trio.open_nursery() as nursery, TaskGroup() as task_group:
        await _reading(connection, task_group)
        started = trio.current_time()
        await connection.protocol_send(Closed())  # the client never closes
        while not stream.closed:
            await trio.sleep(0.1)
        assert LINGER_SECONDS <= trio.current_time() - started < LINGER_SECONDS + 1
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("why", ["request whole", "shutting down", "not reading yet"])
async def test_otherwise_a_closed_connection_closes_at_once(why: str) -> None:
    connection, stream = _connection()
    _send, stream.incoming = trio.open_memory_channel[bytes](0)
    async with trio.open_nursery() as nursery, TaskGroup() as task_group:
        if why != "not reading yet":
            await _reading(connection, task_group)
        if why == "request whole":
            connection.protocol.sending = False  # type: ignore[attr-defined]
        if why == "shutting down":
            await connection.context.terminated.set()
        await connection.protocol_send(Closed())
        assert stream.closed
        nursery.cancel_scope.cancel()


class _Client:
    """Stands for the connection under a protocol serving a real app: records what is
    written, and how many schedule points the test's task had taken at each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.steps_at_write: list[int] = []
        self.steps: StepsOf | None = None

    async def send(self, event: object) -> None:  # the protocol's ``send``
        if isinstance(event, RawData):
            self.writes.append(event.data)
            self.steps_at_write.append(self.steps.ended if self.steps else -1)


def _recording_app(tasks: list[trio.lowlevel.Task], *, fail: bool = False):
    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        tasks.append(trio.lowlevel.current_task())
        if fail:
            raise RuntimeError("the app failed")
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _serving(app: Callable, task_group: TaskGroup, client: _Client) -> Http11Protocol:
    return Http11Protocol(
        ASGIWrapper(app), Config(), WorkerContext(None), task_group, {}, False, None, None,
        client.send,
    )  # fmt: skip


async def test_a_probe_is_answered_in_the_reading_task_before_it_yields() -> None:
    tasks: list[trio.lowlevel.Task] = []
    client = _Client()
    client.steps = StepsOf(trio.lowlevel.current_task())
    async with TaskGroup() as task_group:
        protocol = _serving(_recording_app(tasks), task_group, client)
        trio.lowlevel.add_instrument(client.steps)
        try:
            await protocol.handle(RawData(data=b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n"))
        finally:
            trio.lowlevel.remove_instrument(client.steps)
        assert tasks == [trio.lowlevel.current_task()]  # no task of its own
        [write] = client.writes
        assert write.startswith(b"HTTP/1.1 200 ") and write.endswith(b"\r\n\r\nok")
        assert client.steps_at_write == [0]  # written before any schedule point
        # The connection is ready for its next request, which is served as well.
        assert protocol.connection.our_state is protocol.connection.their_state is h11.IDLE
        await protocol.handle(RawData(data=b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n"))
        assert len(client.writes) == 2
        assert tasks == [trio.lowlevel.current_task()] * 2


@pytest.mark.parametrize(
    "request_head",
    [
        b"HEAD /livez HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /livez?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /livez HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        b"GET /livez HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
)
async def test_any_other_request_runs_in_a_task_of_its_own(request_head: bytes) -> None:
    tasks: list[trio.lowlevel.Task] = []
    client = _Client()
    async with TaskGroup() as task_group:
        protocol = _serving(_recording_app(tasks), task_group, client)
        await protocol.handle(RawData(data=request_head))
        await trio.testing.wait_all_tasks_blocked()
        assert len(tasks) == 1 and tasks[0] is not trio.lowlevel.current_task()
        assert client.writes and client.writes[0].startswith(b"HTTP/1.1 200 ")


async def test_a_probe_whose_app_fails_is_answered_500() -> None:
    tasks: list[trio.lowlevel.Task] = []
    client = _Client()
    async with TaskGroup() as task_group:
        protocol = _serving(_recording_app(tasks, fail=True), task_group, client)
        await protocol.handle(RawData(data=b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n"))
    assert tasks == [trio.lowlevel.current_task()]
    assert client.writes and client.writes[0].startswith(b"HTTP/1.1 500 ")


class _Wrapping:
    """Stands for hypercorn's ``ProtocolWrapper`` around a real HTTP/1.1 protocol."""

    def __init__(self, protocol: Http11Protocol) -> None:
        self.protocol = protocol

    async def handle(self, event: object) -> None:
        await self.protocol.handle(event)  # type: ignore[arg-type]


class _StreamInFlight:
    """Stands for the stream of a request still being answered."""

    told_closed = False

    async def handle(self, event: object) -> None:
        self.told_closed = True


@pytest.mark.parametrize("in_flight", [False, True], ids=["between requests", "in flight"])
async def test_a_client_that_closes_between_requests_is_closed_at_once(in_flight: bool) -> None:
    connection, stream = _connection()
    http11 = Http11Protocol(
        None, Config(), WorkerContext(None), None, {}, False, None, None, _Recorder().send
    )
    request = _StreamInFlight()
    if in_flight:
        http11.stream = request  # type: ignore[assignment]
    connection.protocol = _Wrapping(http11)  # type: ignore[assignment]
    send, stream.incoming = trio.open_memory_channel[bytes](1)
    send.send_nowait(b"")  # the client's end
    async with TaskGroup() as task_group:
        await connection.idle_task.restart(task_group, trio.sleep_forever)
        await _reading(connection, task_group)
        # Between requests: closed now, the keep-alive timer stopped (the task group
        # could not end otherwise). In flight: the request is told, and the connection
        # closes when its answer ends, as in hypercorn.
        assert stream.closed is (not in_flight)
        assert request.told_closed is in_flight
        if in_flight:
            await connection.idle_task.stop()
