"""Psycopg's ``AsyncConnection``, driven natively by Trio (no asyncio event loop).

Every protocol operation of psycopg's async classes (queries, transactions,
``notifies()``, COPY, server-side cursors, ``executemany()``) is a libpq generator that
yields "wait until the socket is readable / writable / either" and is consumed by one
method, ``AsyncConnection.wait()``. :class:`TrioConnection` overrides that method with
``trio.lowlevel.wait_readable`` / ``wait_writable``, replaces the connection lock, and
connects through :meth:`TrioConnection.connect`; the rest of psycopg's async API is
used unchanged.

Contract
--------
* **Cancellation.** Every wait is a Trio checkpoint. When a cancellation (a
  ``move_on_after``, a cancelled nursery, Ctrl-C) interrupts an operation whose query
  is in flight (``transaction_status == ACTIVE``, COPY included), the adapter sends a
  cancel request to the server, then, shielded and for at most
  ``CANCEL_DRAIN_TIMEOUT`` seconds, reads the rest of the operation's results and
  discards them (the expected ``QueryCanceled`` is swallowed; an open COPY FROM is
  aborted). If that does not succeed the connection is closed (``conn.broken``).
  ``Cancelled`` is always re-raised. Afterwards the server-side query is gone and the
  connection is idle, in a failed transaction (roll it back), or closed.
* **Operations started in an already-cancelled scope** are sent, then cancelled as
  above, instead of failing before they start. That is what lets psycopg's own cleanup
  code (a ``transaction()`` block rolling back on exit, COPY ending, a cursor closing),
  which runs while a cancellation propagates, leave the connection consistent. An
  operation may therefore take effect although ``Cancelled`` is raised (a short
  autocommit INSERT, a ROLLBACK): shield cleanup that must complete, and do not rely
  on a cancelled query having had no effect.
* **Completed means completed.** An operation that finished without having to wait
  ends with a cancel-shielded schedule point (taken at most every ``MAX_BUSY_TIME``
  seconds), so a hot loop of non-blocking calls cannot starve other tasks and a
  cancellation never discards a result already obtained.
* **One task at a time.** Operations are serialised by a FIFO lock, as in psycopg.
  Re-entering it from the task holding it (a query inside
  ``async for n in conn.notifies()``) raises ``ProgrammingError`` instead of
  deadlocking. Wrap ``notifies()`` and ``cursor.stream()`` in
  ``contextlib.aclosing()`` when leaving them early.
* **Closing.** ``close()`` wakes tasks blocked on the socket (they get
  ``OperationalError``). ``async with conn:`` commits on success and just closes on
  error (the server aborts the transaction).
* **Connecting.** :meth:`TrioConnection.connect` enforces its timeout itself and
  resolves a single host name with Trio's resolver, so the event loop never blocks on
  DNS. A multi-host conninfo (``host=a,b``) is handed to libpq as is: libpq resolves
  those names itself, blocking the loop for the lookup.

Not usable on Trio
------------------
* ``psycopg_pool`` (asyncio only): use :mod:`daemon.shared.db.pool`.
* ``AsyncConnection.connect()`` and ``psycopg.waiting.wait_async`` /
  ``wait_conn_async``: they need a running asyncio loop.
* The queued COPY writer (``AsyncQueuedLibpqWriter``), which spawns asyncio tasks; the
  default COPY writer works.
* ``connect(context=...)``: register adapters on ``conn.adapters`` instead.
* Pipeline mode (``conn.pipeline()``) and two-phase commit are untested;
  ``executemany()``, which uses pipeline mode internally, is tested.

Psycopg internals
-----------------
Everything private or undocumented this package relies on is used in this module only,
each with a comment saying why: the ``wait()`` contract itself, the ``lock``
attribute, ``errors._WaitTimeout``, ``generators.connect`` / ``generators.cancel``,
``waiting.Wait`` / ``Ready``, and the facts that ``_try_cancel()`` goes through
``cancel_safe()`` and that ``close()`` awaits nothing before ``pgconn.finish()``. The
dependency is pinned to ``psycopg>=3.3,<3.4``;
``tests/integration/test_db_adapter.py::test_psycopg_internals_the_adapter_relies_on``
checks them, and the rest of that file exercises them: run it before moving the pin.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import select
import socket
from time import monotonic
from typing import TYPE_CHECKING, Any, Self, cast

import psycopg
import trio
from psycopg import capabilities, generators, pq
from psycopg import errors as e
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import AsyncRowFactory, Row, tuple_row

# `psycopg.waiting.Wait` / `Ready`: the values the libpq generators yield (what to wait
# for) and expect back (what is ready). Undocumented but not underscored; re-exported by
# psycopg.waiting on purpose ("re-exported" in its source).
from psycopg.waiting import Ready, Wait

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

    from psycopg.abc import RV, ConnParam, PQGen, PQGenConn
    from psycopg.cursor_async import AsyncCursor
    from psycopg.pq.abc import PGconn

__all__ = ["CANCEL_DRAIN_TIMEOUT", "DEFAULT_CONNECT_TIMEOUT", "MAX_BUSY_TIME", "TrioConnection"]

logger = logging.getLogger("triaged.db")

MAX_BUSY_TIME = 0.005
"""Longest stretch (seconds) of non-blocking work before yielding to the scheduler."""

CANCEL_DRAIN_TIMEOUT = 5.0
"""How long a cancelled query may take to stop on the server before the connection is
closed instead."""

DEFAULT_CONNECT_TIMEOUT = 30.0
"""Connect timeout when neither the caller nor the conninfo gives one."""

_MIN_CONNINFO_TIMEOUT = 2.0  # libpq's own floor for connect_timeout
# Unprompted messages are few (a FATAL notice, then EOF): more reads than this mean a
# flood of notifications, and the connection is alive.
_MAX_UNPROMPTED_READS = 4

WAIT_R = Wait.R
WAIT_W = Wait.W
WAIT_RW = Wait.RW
READY_NONE = Ready.NONE
READY_R = Ready.R
READY_W = Ready.W

OK = pq.ConnStatus.OK
ACTIVE = pq.TransactionStatus.ACTIVE
COPY_OUT = pq.ExecStatus.COPY_OUT
COPY_IN = pq.ExecStatus.COPY_IN
COPY_BOTH = pq.ExecStatus.COPY_BOTH
UNKNOWN = pq.TransactionStatus.UNKNOWN

# When the scheduler last got control from this module (see _yield_if_busy()).
_last_yield = 0.0


class TrioConnection(psycopg.AsyncConnection[Row]):
    """A psycopg async connection whose I/O runs on the current Trio event loop.

    Create it with :meth:`connect`. Transaction ownership is psycopg's: with
    ``autocommit`` off (the default) the first statement opens a transaction that the
    caller must commit or roll back. See the module docstring for the cancellation
    contract.
    """

    def __init__(
        self,
        pgconn: PGconn,
        row_factory: AsyncRowFactory[Row] | None = None,
    ) -> None:
        super().__init__(pgconn, row_factory or cast("AsyncRowFactory[Row]", tuple_row))
        # `AsyncConnection.lock` is an asyncio.Lock in psycopg: every operation of the
        # async classes takes it with `async with conn.lock`. A Trio lock replaces it.
        self.lock = _ConnectionLock()  # type: ignore[assignment]

    @classmethod
    async def connect(
        cls,
        conninfo: str = "",
        *,
        autocommit: bool = False,
        prepare_threshold: int | None = 5,
        row_factory: AsyncRowFactory[Row] | None = None,
        cursor_factory: type[AsyncCursor[Row]] | None = None,
        connect_timeout: float | None = None,
        **kwargs: ConnParam,
    ) -> Self:
        """Open a connection, on Trio.

        ``connect_timeout`` (seconds, may be fractional) bounds the whole attempt; when
        omitted, the conninfo's ``connect_timeout`` is used with libpq's rules, else
        ``DEFAULT_CONNECT_TIMEOUT``. Other arguments are psycopg's (``context=`` is not
        supported: register adapters on ``conn.adapters`` instead).

        Raises:
            psycopg.errors.ConnectionTimeout: the server did not complete the handshake
                in time.
            psycopg.OperationalError: the server refused the connection or could not be
                reached (the message is libpq's and never contains the password).
        """
        params = conninfo_to_dict(conninfo, **kwargs)
        timeout = connect_timeout if connect_timeout is not None else _conninfo_timeout(params)
        with trio.move_on_after(timeout) as scope:
            params = await _resolve_single_host(params)
            # `psycopg.generators.connect`: the non-blocking libpq connection handshake
            # as a generator yielding (fd, Wait). Undocumented; it is what psycopg's own
            # `_connect_gen` wraps, minus the `cls(pgconn)` we do below.
            gen = generators.connect(make_conninfo("", **params))
            try:
                pgconn = await _drive_conn(gen)
            finally:
                gen.close()  # a no-op when complete; frees the half-open libpq conn if not
        if scope.cancelled_caught:
            raise e.ConnectionTimeout(f"connection timeout expired after {timeout:g} s")

        conn = cls(pgconn)
        try:
            if autocommit:
                await conn.set_autocommit(True)
            if row_factory is not None:
                conn.row_factory = row_factory
            if cursor_factory is not None:
                conn.cursor_factory = cursor_factory
            conn.prepare_threshold = prepare_threshold
        except BaseException:
            with trio.CancelScope(shield=True):
                await conn.close()
            raise
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """Commit if the block succeeded, then close; on error, just close.

        Closing aborts the open transaction on the server, without the ROLLBACK round
        trip psycopg makes (which, with Trio's cancellation, would skip the close).
        """
        try:
            if exc_type is None and not self.closed:
                await self.commit()
        finally:
            await self.close()

    async def wait(self, gen: PQGen[RV], interval: float = 0.0, timeout: float | None = None) -> RV:
        """Drive a libpq generator on this connection's socket (psycopg's wait contract).

        ``interval`` is ignored: Trio needs no periodic wake-up to notice a
        cancellation. Raises ``psycopg.errors._WaitTimeout`` when ``timeout`` expires
        (``notifies(timeout=...)`` relies on it). On cancellation, stops the running
        query as described in the module docstring, then re-raises ``Cancelled``.
        """
        try:
            return await _drive(gen, self.pgconn, timeout)
        except (trio.Cancelled, KeyboardInterrupt):
            await self._stop_interrupted(gen)
            raise

    async def cancel_safe(self, *, timeout: float = 30.0) -> None:
        """Ask the server to cancel the running query, without blocking the event loop.

        Returns once the server has received the request, which is no guarantee that the
        query stops. A no-op on a closed connection.

        Raises:
            psycopg.errors.CancellationTimeout: the request was not delivered in time.
            psycopg.OperationalError: the cancel connection failed.
        """
        # psycopg's version drives its cancel generator with asyncio (wait_conn_async)
        # and falls back to asyncio.to_thread: both need an asyncio loop. Overriding it
        # also fixes `_try_cancel()`, which psycopg's stream() and COPY cleanup call.
        if self.closed:
            return
        if not capabilities.has_cancel_safe():
            # libpq < 17: PQcancel blocks while it connects; run it in a thread.
            await trio.to_thread.run_sync(self.cancel)
            return
        # `pgconn.cancel_conn()` (libpq >= 17 PQcancelCreate) and
        # `psycopg.generators.cancel` (undocumented: the non-blocking cancel handshake
        # psycopg's `_cancel_gen` runs).
        cancel_conn = self.pgconn.cancel_conn()
        try:
            cancel_conn.start()
            with trio.move_on_after(timeout or math.inf) as scope:
                await _drive_conn(generators.cancel(cancel_conn))
            if scope.cancelled_caught:
                raise e.CancellationTimeout("cancellation timeout expired")
        finally:
            cancel_conn.finish()

    def is_alive_nowait(self) -> bool:
        """Whether this *idle* connection still looks usable, judged without a round trip.

        Reads what the server sent unprompted (a termination notice, notifications,
        parameter changes) and returns False once the server has closed the connection.
        A True answer is no guarantee (a silently vanished host still looks alive): ping
        for that. Must not be called while an operation runs on the connection.
        """
        pgconn = self.pgconn
        for _ in range(_MAX_UNPROMPTED_READS):
            if pgconn.status != OK:
                return False
            if not _poll(pgconn.socket, WAIT_R):
                return True
            try:
                pgconn.consume_input()  # buffers notifications for notifies()
            except e.OperationalError:
                return False
        return pgconn.status == OK

    async def close(self) -> None:
        """Close the connection; tasks blocked on it get ``OperationalError``."""
        if not self.closed:
            _notify_closing(self.pgconn)
        # No checkpoint between the notification and the close (psycopg's close() awaits
        # nothing before `pgconn.finish()`): no task can start waiting on the dead fd.
        await super().close()

    async def _stop_interrupted(self, gen: PQGen[Any]) -> None:
        """Leave the connection idle (or closed) after ``gen`` was cancelled mid-wait."""
        pgconn = self.pgconn
        if pgconn.status != OK or pgconn.transaction_status != ACTIVE:
            return  # nothing in flight (e.g. waiting in notifies()): nothing to undo
        with trio.CancelScope(
            shield=True, deadline=trio.current_time() + CANCEL_DRAIN_TIMEOUT
        ) as scope:
            try:
                await self.cancel_safe(timeout=CANCEL_DRAIN_TIMEOUT)
                # Drive the interrupted generator to its end (it may be only one step of
                # the operation: one row of a stream, one block of a COPY)...
                try:
                    await _drive(gen, pgconn, None)
                except e.QueryCanceled:
                    pass  # what the cancel request is expected to produce
                except e.DatabaseError:
                    pass  # the query failed by itself meanwhile: the connection is fine
                # ...then whatever the rest of the operation would have read or written.
                if pgconn.status == OK and not pgconn.pipeline_status:
                    await _drive(_discard_pending(pgconn), pgconn, None)
            except Exception as exc:
                # Cleanup path: log, and let the Cancelled we are handling propagate.
                logger.warning(
                    "query cancellation failed (%s): closing the connection",
                    type(exc).__name__,
                    extra={"action": "db.cancel_failed", "error": type(exc).__name__},
                )
        if pgconn.status == OK and pgconn.transaction_status in (ACTIVE, UNKNOWN):
            if scope.cancelled_caught:
                logger.warning(
                    "query still running %g s after cancellation: closing the connection",
                    CANCEL_DRAIN_TIMEOUT,
                    extra={"action": "db.cancel_timeout"},
                )
            _notify_closing(pgconn)
            pgconn.finish()  # leaves `conn.broken` true: not a clean, explicit close()


class _ConnectionLock:
    """The connection lock: FIFO-fair, and loud instead of deadlocked when re-entered.

    Unlike ``trio.Lock``, it may be released by another task than the one that took
    it. psycopg holds the lock across the yields of async generators
    (``notifies()``, ``cursor.stream()``); when such a generator is abandoned without
    ``aclose()``, Trio finalises it in a system task, and a ``trio.Lock`` would refuse
    the release there and stay held for ever, wedging the connection.
    """

    def __init__(self) -> None:
        self._semaphore = trio.Semaphore(1, max_value=1)
        self._owner: trio.lowlevel.Task | None = None

    async def __aenter__(self) -> None:
        task = trio.lowlevel.current_task()
        if self._owner is task:
            raise e.ProgrammingError(
                "the connection is already in use by this task: a notifies() or stream()"
                " generator is still open (wrap it in contextlib.aclosing() to leave it"
                " early), or this operation runs inside such a loop"
            )
        try:
            # Not a checkpoint when the lock is free: psycopg's cleanup code (a
            # transaction block rolling back on exit, COPY ending, a cursor closing) takes
            # the lock while a cancellation propagates, and must get to run; the operation
            # itself is then cancelled on the server by wait().
            self._semaphore.acquire_nowait()
        except trio.WouldBlock:
            await self._semaphore.acquire()
        self._owner = task

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self._owner = None
        self._semaphore.release()


async def _drive(gen: PQGen[RV], pgconn: PGconn, timeout: float | None) -> RV:
    """Consume ``gen``, waiting on ``pgconn``'s socket whenever it would block.

    Raises ``psycopg.errors._WaitTimeout`` if ``timeout`` (seconds) expires first; a
    timeout of 0 still polls the socket once.
    """
    try:
        wait = next(gen)
    except StopIteration as done:
        await _yield_if_busy()
        return cast("RV", done.value)

    fileno = pgconn.socket
    deadline = math.inf if timeout is None else trio.current_time() + timeout
    try:
        while True:
            ready = READY_NONE
            if wait & WAIT_W:
                # A socket asked for writing is nearly always writable: a zero-timeout
                # poll is far cheaper than a trip through the scheduler.
                await _yield_if_busy(shielded=False)
                ready = _poll(fileno, wait)
            if ready:
                pass
            elif deadline == math.inf:
                ready = await _wait_socket(fileno, wait)
            elif trio.current_time() < deadline:
                with trio.move_on_at(deadline):
                    ready = await _wait_socket(fileno, wait)
            elif not (ready := _poll(fileno, wait)):  # past the deadline: one last look
                # `psycopg.errors._WaitTimeout` (private): what psycopg's wait functions
                # raise on timeout; AsyncConnection.notifies(timeout=) catches exactly it.
                raise e._WaitTimeout("wait timeout expired")
            wait = gen.send(ready)
    except StopIteration as done:
        return cast("RV", done.value)
    except (OSError, trio.ClosedResourceError) as exc:
        raise e.OperationalError("the connection is closed") from exc


async def _drive_conn(gen: PQGenConn[RV]) -> RV:
    """Consume a generator yielding ``(fd, Wait)`` pairs (connect, cancel)."""
    try:
        fileno, wait = next(gen)
        while True:
            ready = await _wait_socket(fileno, wait)
            fileno, wait = gen.send(ready)
    except StopIteration as done:
        return cast("RV", done.value)
    except (OSError, trio.ClosedResourceError) as exc:
        raise e.OperationalError(f"connection failed: {exc}") from exc


async def _wait_socket(fileno: int, wait: int) -> int:
    """Block until ``fileno`` is ready for what ``wait`` asks; return the Ready flags."""
    global _last_yield
    try:
        if wait == WAIT_R:
            await trio.lowlevel.wait_readable(fileno)
            return READY_R
        if wait == WAIT_W:
            await trio.lowlevel.wait_writable(fileno)
            return READY_W
        if wait == WAIT_RW:
            return await _wait_either(fileno)
        raise e.InternalError(f"bad wait state from psycopg: {wait!r}")
    finally:
        _last_yield = monotonic()


async def _wait_either(fileno: int) -> int:
    """Race ``wait_readable`` against ``wait_writable`` (Trio has no single call)."""
    ready = READY_NONE

    async def wait_for(waiter: Callable[[int], Awaitable[None]], flag: int) -> None:
        nonlocal ready
        await waiter(fileno)
        ready |= flag
        nursery.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for, trio.lowlevel.wait_readable, READY_R)
            nursery.start_soon(wait_for, trio.lowlevel.wait_writable, READY_W)
    except BaseExceptionGroup as group:
        # Unwrap so that callers see a plain Cancelled / ClosedResourceError, as from
        # the single-direction waits: prefer a real error over the Cancelled copies.
        errors = [exc for exc in group.exceptions if not isinstance(exc, trio.Cancelled)]
        raise (errors or list(group.exceptions))[0] from None
    return ready


def _poll(fileno: int, wait: int) -> int:
    """The Ready flags of ``fileno`` right now, without blocking."""
    poller = select.poll()
    poller.register(
        fileno, (select.POLLIN if wait & WAIT_R else 0) | (select.POLLOUT if wait & WAIT_W else 0)
    )
    ready = READY_NONE
    for _, events in poller.poll(0):
        # A hung-up or failed socket counts as ready: libpq then reports the error.
        if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
            ready |= READY_R
        if events & (select.POLLOUT | select.POLLHUP | select.POLLERR):
            ready |= READY_W
    return ready & wait


async def _yield_if_busy(*, shielded: bool = True) -> None:
    """Yield to the scheduler if it has not had control for ``MAX_BUSY_TIME``.

    ``shielded``: after an operation completed, a cancellation must not discard its
    result, so only a schedule point is taken there.
    """
    global _last_yield
    if monotonic() - _last_yield >= MAX_BUSY_TIME:
        if shielded:
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            await trio.lowlevel.checkpoint()
        _last_yield = monotonic()


def _discard_pending(pgconn: PGconn) -> PQGen[None]:
    """Read and drop what remains of the running query: rows, COPY data, results.

    A COPY FROM STDIN still open is ended with an error, so the server aborts it.
    Returns when the server has nothing more for the query (the connection is then idle
    or in a failed transaction); leaves a COPY BOTH (replication) alone.
    """
    while True:
        while pgconn.is_busy():
            while not (yield WAIT_R):
                pass
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return
        status = result.status
        if status == COPY_OUT:
            while (received := pgconn.get_copy_data(1)[0]) != -1:
                if received == 0:
                    while not (yield WAIT_R):
                        pass
                    pgconn.consume_input()
        elif status == COPY_IN:
            while not pgconn.put_copy_end(b"cancelled by the client"):
                while not (yield WAIT_W):
                    pass
            while pgconn.flush():
                while not (yield WAIT_RW):
                    pass
        elif status == COPY_BOTH:
            return


def _notify_closing(pgconn: PGconn) -> None:
    """Wake the tasks blocked on ``pgconn``'s socket before it gets closed."""
    try:
        fileno = pgconn.socket
    except e.OperationalError:
        return  # no socket any more: nobody can be waiting on it
    trio.lowlevel.notify_closing(fileno)


def _conninfo_timeout(params: dict[str, Any]) -> float:
    """The connect timeout set by the conninfo, with libpq's rules, or the default."""
    value = params.get("connect_timeout")
    try:
        seconds = float(value) if value not in (None, "") else 0.0
    except (TypeError, ValueError):
        raise e.ProgrammingError(f"bad value for connect_timeout: {value!r}") from None
    if seconds <= 0:
        return DEFAULT_CONNECT_TIMEOUT
    return max(seconds, _MIN_CONNINFO_TIMEOUT)


async def _resolve_single_host(params: dict[str, Any]) -> dict[str, Any]:
    """Resolve a single host name with Trio's resolver, so libpq does not block on DNS.

    Sets ``hostaddr`` and keeps ``host`` (libpq still uses it for TLS verification and
    .pgpass). Unix-socket directories, IP literals and multi-host lists are left alone.
    """
    host = str(params.get("host") or "")
    if not host or params.get("hostaddr") or "," in host or host.startswith(("/", "@")):
        return params
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return params
    port = str(params.get("port") or "5432")
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise e.OperationalError(f"could not resolve host {host!r}: {exc}") from None
    if not infos:
        raise e.OperationalError(f"could not resolve host {host!r}")
    return {**params, "hostaddr": str(infos[0][4][0])}
