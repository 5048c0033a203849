"""hypercorn's per-connection classes as triaged runs them: fewer schedule points per
response.

Every schedule point of a request's path waits for a whole pass of Trio's run queue: a
few microseconds when the process is idle, milliseconds while uploads and the worker's
steps fill the loop. hypercorn 0.18 (trio worker) took six of them to write one
in-memory response: for each of the head, the body and the (empty) end of message, a
``trio.Lock`` taken with ``async with`` (a schedule point even when free) and a
``send_all``. Then a read of a 20-row page waited behind six passes of the loop, and
``/livez`` behind more passes than the work it does (issue 16). Here:

- :class:`Http11Protocol` holds a response's head until its first body bytes (or its
  end) and writes them together; an empty write (the end of a ``Content-Length`` body)
  is not made at all. A streamed body's head goes out with its first chunk.
- :class:`Http11Protocol` runs the app for ``GET /livez`` (no body, no upgrade) in the
  connection's reading task, when the request is whole, instead of starting a task for
  it: the probe's answer goes out in the pass of the loop that read it, not in the next
  one (under load a pass is several milliseconds). The app, the edge, the access log and
  the metrics see it as any request; only the reading of that connection waits for the
  app, as it would for the next request anyway. Only this path: its handler does no I/O
  and takes no schedule point (any other route would hold up its connection's reading).
- :class:`TcpConnection` closes a connection whose client closed its side between
  requests at once; hypercorn kept it open until the keep-alive timeout ran out (5 s),
  and since ``/livez`` is answered before its reading task reads the client's end,
  ``printf 'GET /livez ...' | nc -N`` would have met that wait every time.
- :class:`TcpConnection` takes its free send lock without yielding (a held one is
  still waited for, in order), and restarts and stops the connection's keep-alive idle
  timer without yielding (:class:`_IdleTimer`).
- :class:`TcpConnection` also closes a connection the server ends while the client may
  still be sending its request (a body refused with 413, 408 or 503 before it was all
  read, bytes h11 refused) the way HTTP/1.1 servers must ("lingering close", RFC 9112
  section 9.6): it half-closes, then keeps reading and dropping what the client still
  sends (never buffering it), until the client closes too or ``LINGER_SECONDS`` pass.
  Nobody waits for it (the app's last ``send`` returns at once), and it does not happen
  after a whole request or once the server is shutting down. Closing at once with
  unread bytes would reset the connection, and a client still sending its body would
  get a broken pipe, or a reset, instead of the answer; that race got worse once the
  answer went out in one write.

Otherwise what a client sees does not change: the same bytes, in the same order, on the
same connection. Exceptions: a response whose app fails after its head and before any
body closed the connection after the head (it now closes it without one); a request
pipelined behind ``GET /livez`` on a connection that ``Connection: close`` ends was
answered 400, it is now answered as any request after a probe (its own 200 or error).

Tied to hypercorn's internals (0.18: ``H11Protocol._send_h11_event``, ``_create_stream``
and ``task_group``; ``HTTPStream``'s call of ``spawn_app``;
``hypercorn.trio.task_group._handle``; ``TCPServer``'s ``protocol_send``, ``send_lock``,
``idle_task`` (its ``restart`` and ``stop``), ``_task_group`` (``TaskGroup._nursery``),
``context``, and ``_read_data``, whose loop is repeated here; ``ProtocolWrapper.protocol``;
``hypercorn.trio.run.TCPServer``):
``tests/unit/test_hypercorn_connection.py`` fails if an upgrade changes them.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

import h11
import hypercorn.protocol
import hypercorn.trio.run
import trio
from hypercorn.events import Closed, RawData
from hypercorn.trio.task_group import _handle
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer

from daemon.api.protocol_errors import ProblemH11Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hypercorn.config import Config
    from hypercorn.events import Event
    from hypercorn.typing import AppWrapper, ASGIReceiveEvent, ASGISendEvent, Scope

LINGER_SECONDS = 2.0
"""How long a connection the server closes keeps draining what the client still sends."""

INLINE_TARGETS = frozenset({b"/livez"})
"""Request targets whose ``GET`` runs in the reading task (see :class:`_InlineApp`). Only
routes whose app answers without waiting for anything: the reading task waits for it, and
no ``http.disconnect`` ever reaches an app run there."""
_BODY_OR_UPGRADE = frozenset({b"content-length", b"transfer-encoding", b"upgrade"})


class Http11Protocol(ProblemH11Protocol):
    """HTTP/1.1 with a response's head written together with its first body bytes.

    Also answers hypercorn's own refusals in problem+json (:class:`ProblemH11Protocol`).
    """

    _held_head: bytes = b""

    def client_may_be_sending(self) -> bool:
        """Whether the client may still be sending its request: in its body, or in bytes
        h11 refused. What a lingering close waits out (not after a whole request, nor on
        an idle keep-alive connection)."""
        return self.connection.their_state in (h11.SEND_BODY, h11.ERROR)

    async def _create_stream(self, request: h11.Request) -> None:
        if not _runs_inline(request):
            await super()._create_stream(request)
            return
        task_group = self.task_group
        self.task_group = _InlineApp()  # what the request's stream starts its app with
        try:
            await super()._create_stream(request)
        finally:
            self.task_group = task_group

    async def _send_h11_event(self, event: Any) -> None:
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return
        if type(event) is h11.Response:  # a final head (1xx heads go out at once)
            self._held_head = data
            return
        if self._held_head:
            data, self._held_head = self._held_head + data, b""
        if data:
            await self.send(RawData(data=data))


def _runs_inline(request: h11.Request) -> bool:
    return (
        request.method == b"GET"
        and request.target in INLINE_TARGETS
        and not any(name in _BODY_OR_UPGRADE for name, _ in request.headers)
    )


class _InlineApp:
    """Stands for hypercorn's task group for one request without a body: its app runs in
    the task that hands over the request's end (the connection's reading task), not in a
    task of its own. It runs as hypercorn runs an app (``_handle``: a failure is logged and
    answered 500, the stream is closed after it); its ``receive`` gives the request's
    messages, then waits forever: the client's going away is never passed on (it could
    only be read by this very task once the app has returned)."""

    def __init__(self) -> None:
        self._messages: list[ASGIReceiveEvent] = []
        self._ran = False

    async def spawn_app(
        self,
        app: AppWrapper,
        config: Config,
        scope: Scope,
        send: Callable[[ASGISendEvent | None], Awaitable[None]],
    ) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
        async def put(message: ASGIReceiveEvent) -> None:
            if self._ran:
                return  # the disconnect after the answer: nobody is listening any more
            self._messages.append(message)
            if message["type"] == "http.request" and not message.get("more_body", False):
                self._ran = True
                run_sync, from_thread = trio.to_thread.run_sync, trio.from_thread.run
                await _handle(app, config, scope, self._receive, send, run_sync, from_thread)

        return put

    async def _receive(self) -> ASGIReceiveEvent:
        if not self._messages:
            await trio.sleep_forever()  # the client's going away is not passed on (above)
        return self._messages.pop(0)


class _IdleTimer:
    """hypercorn's keep-alive idle timer (its ``TrioSingleTask``), restarted and stopped
    without a schedule point.

    hypercorn restarts it as each response ends, under a ``trio.Lock`` taken with ``async
    with`` and with ``nursery.start``, which waits for the new task's first step: two
    passes of the loop for the app's last ``send`` to return, and a temporary nursery, at
    every request. Here a restart cancels the running timer, if any, and starts the new
    one with ``start_soon`` inside a cancel scope made beforehand, so a ``stop`` that
    comes before its first step still cancels it. Calls never overlap (they do not yield),
    so no lock is needed."""

    def __init__(self) -> None:
        self._handle: trio.CancelScope | None = None

    async def restart(self, task_group: Any, action: Callable[[], Awaitable[None]]) -> None:
        await self.stop()  # takes no schedule point
        self._handle = trio.CancelScope()
        task_group._nursery.start_soon(_run_in, self._handle, action)

    async def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None


async def _run_in(scope: trio.CancelScope, action: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await action()


class TcpConnection(TCPServer):
    """hypercorn's connection task: a free send lock and the idle timer's restart and stop
    without a schedule point; a lingering close when the server ends a request still being sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_task = _IdleTimer()
        self._client_done = trio.Event()  # the reading task has ended (client EOF, error)
        self._reader: trio.lowlevel.Task | None = None
        self._draining = False  # the server is closing: what arrives is read and dropped

    async def _read_data(self) -> None:
        """hypercorn's reading loop, except that while the connection lingers what the
        client sends is dropped here, not handed to h11 (which would buffer it)."""
        self._reader = trio.lowlevel.current_task()
        try:
            while True:
                try:
                    with trio.fail_after(self.config.read_timeout or math.inf):
                        data = await self.stream.receive_some(MAX_RECV)
                except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                    break
                if not self._draining:
                    await self.protocol.handle(RawData(bytes(data)))
                if data == b"":
                    break
            between_requests = self._between_requests()  # before Closed ends any in flight
            await self.protocol.handle(Closed())
            if between_requests and not self._draining:
                # Nothing to answer any more: close now (hypercorn would keep the
                # connection until its keep-alive timer ran out).
                await self.idle_task.stop()
                await self._close()
        finally:
            self._client_done.set()

    def _between_requests(self) -> bool:
        """Whether the HTTP/1.1 connection has no request in progress (none begun, or the
        last one answered and closed)."""
        protocol = getattr(self.protocol, "protocol", None)  # ProtocolWrapper -> HTTP/1.1
        return isinstance(protocol, Http11Protocol) and protocol.stream is None

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Closed) and self._may_linger():
            await self._start_lingering()
            await self.protocol.handle(Closed())
            return
        if not isinstance(event, RawData) or self.send_lock.locked():
            await super().protocol_send(event)
            return
        await trio.lowlevel.checkpoint_if_cancelled()  # as ``Lock.acquire``, without a yield
        self.send_lock.acquire_nowait()
        try:
            try:
                with trio.CancelScope(shield=True):  # as hypercorn: a write is never cut
                    await self.stream.send_all(event.data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self.protocol.handle(Closed())
        finally:
            self.send_lock.release()

    def _may_linger(self) -> bool:
        """Whether closing now needs a lingering close: the client may still be sending its
        request (the protocol says so), something is reading, it is not the reading task
        asking, and the server is not shutting down."""
        if self._reader is None or self._client_done.is_set():
            return False
        if trio.lowlevel.current_task() is self._reader or self.context.terminated.is_set():
            return False
        protocol = getattr(self.protocol, "protocol", None)  # ProtocolWrapper -> HTTP/1.1
        may_be_sending = getattr(protocol, "client_may_be_sending", None)
        return bool(may_be_sending is not None and may_be_sending())

    async def _start_lingering(self) -> None:
        """Half-close and drop what comes; the connection closes when the client does, or
        after ``LINGER_SECONDS`` (a task of the connection's own, so the caller, the app's
        last ``send``, does not wait)."""
        with contextlib.suppress(
            trio.BrokenResourceError,
            trio.BusyResourceError,
            trio.ClosedResourceError,
            AttributeError,  # a TLS stream cannot half-close: it lingers without
        ):
            await self.stream.send_eof()
        self._draining = True
        self._task_group.spawn(self._end_lingering)

    async def _end_lingering(self) -> None:
        with trio.move_on_after(LINGER_SECONDS):
            await self._client_done.wait()
        await self.stream.aclose()  # wakes the reading task if the client never closed


def install() -> None:
    """Make hypercorn's trio worker build these classes for its connections
    (idempotent; affects this process only)."""
    hypercorn.protocol.H11Protocol = Http11Protocol  # type: ignore[misc]
    hypercorn.trio.run.TCPServer = TcpConnection  # type: ignore[misc]
