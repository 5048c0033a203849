"""A Trio pool of PostgreSQL connections (:class:`TrioConnection`).

Lifecycle: :func:`open_pool` returns at once, without waiting for the database (call
:meth:`Pool.check` to know that it answers); the pool opens ``min_size`` connections in
the background and more on demand, up to ``max_size``. Its background tasks run in a
nursery owned by the ``open_pool`` block. On exit, idle connections are closed, waiting
callers get :class:`PoolClosed`, and connections still lent out are closed when given
back.

Borrowing::

    async with pool.connection() as conn:      # autocommit off: you own the transaction
        ...
    async with pool.transaction() as conn:     # committed on success, else rolled back
        ...

A connection comes back in a clean state whatever happened in the block (including
cancellation): an open or failed transaction is rolled back, ``autocommit`` and the
transaction characteristics are reset, a broken or closed connection is discarded (and
replaced in the background, to keep ``min_size``), one older than ``max_lifetime`` is
closed. Other session state (``SET``, ``LISTEN``, temporary tables, prepared
statements) persists: listen on a connection of your own.

Checkout: waiters are served first come, first served. An idle connection is handed
out after a non-blocking look at its socket (a connection the server terminated is
discarded there) and, if it has been idle longer than ``check_after_idle``, a ping.

Server gone: connection attempts fail, are logged (``action="db.reconnect"``) and
retried with exponential backoff and jitter, one attempt at a time, for as long as
connections are needed; borrowers wait at most their acquire timeout and get
:class:`PoolTimeout` naming the last connection error. The pool recovers by itself when
the server is back.

Errors: getting a connection raises :class:`PoolTimeout` or :class:`PoolClosed`, and
:meth:`Pool.check` any :class:`DatabaseError` (all from ``daemon.shared.errors``);
statements run in a borrowed block raise psycopg's own errors, to be translated by the
caller that knows what they mean. Messages and logs never contain the password of the
conninfo. Never more than ``max_size`` connections exist, counting those being opened.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

import attrs
import psycopg
import trio
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from daemon.shared.db.psycopg_trio import TrioConnection
from daemon.shared.errors import DatabaseError, PoolClosed, PoolTimeout
from daemon.shared.loop_priority import yield_to_foreground

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import TracebackType
    from typing import TypeAlias

    from psycopg.rows import TupleRow

    Connection: TypeAlias = TrioConnection[TupleRow]

__all__ = ["Pool", "PoolStats", "open_pool"]

logger = logging.getLogger("triaged.db")

RECONNECT_BASE_DELAY = 0.1
"""First delay (seconds) before retrying a failed connection attempt; doubles each time."""

RECONNECT_MAX_DELAY = 10.0
"""Cap of the reconnection delay (seconds)."""

RESET_TIMEOUT = 5.0
"""How long giving a connection back (its rollback) may take before it is closed."""

_LIFETIME_JITTER = 0.05  # lifetimes are cut by up to 5% so connections do not expire at once
_MAX_HOUSEKEEPING_INTERVAL = 60.0
_MIN_HOUSEKEEPING_INTERVAL = 0.05

IDLE = pq.TransactionStatus.IDLE
INTRANS = pq.TransactionStatus.INTRANS
INERROR = pq.TransactionStatus.INERROR


@attrs.frozen(kw_only=True)
class PoolStats:
    """A snapshot of a pool; the ``*_total`` counters grow for the pool's lifetime."""

    name: str
    max_size: int
    size: int  # open connections: idle + in_use
    idle: int
    in_use: int
    opening: int  # connection attempts in progress
    waiting: int  # callers waiting for a connection
    connections_opened_total: int
    connections_failed_total: int
    acquire_timeouts_total: int


@attrs.define(eq=False)
class _Entry:
    conn: Connection
    expire_at: float
    idle_since: float


@attrs.define(eq=False)
class _Waiter:
    deadline: float
    event: trio.Event = attrs.Factory(trio.Event)
    entry: _Entry | None = None
    error: DatabaseError | None = None
    timed_out: bool = False


class _Lease:
    """``async with pool.connection()``: a class, not a generator, as it is the hot path."""

    __slots__ = ("_entry", "_pool", "_timeout")

    def __init__(self, pool: Pool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._entry: _Entry | None = None

    async def __aenter__(self) -> Connection:
        self._entry = await self._pool._acquire(self._timeout)
        return self._entry.conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            await self._pool._release(entry)


class Pool:
    """Connections to one database, lent to one task at a time. Built by :func:`open_pool`."""

    def __init__(
        self,
        conninfo: str,
        *,
        name: str,
        min_size: int,
        max_size: int,
        acquire_timeout: float,
        max_lifetime: float,
        max_idle: float,
        connect_timeout: float,
        check_after_idle: float,
    ) -> None:
        self.name = name
        self.min_size = min_size
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.max_lifetime = max_lifetime
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.check_after_idle = check_after_idle
        self._conninfo = conninfo
        self._secret = str(conninfo_to_dict(conninfo).get("password") or "")
        self._closed = False
        self._nursery: trio.Nursery | None = None
        self._idle: deque[_Entry] = deque()  # most recently used on the right
        self._size = 0  # open connections, wherever they are (idle, lent, being checked)
        self._waiters: deque[_Waiter] = deque()
        self._opening = 0
        self._wakeup = trio.Event()  # the maintainer has something to look at
        self._expiry_scope = trio.CancelScope()  # replaced by _expire_waiters()
        self._failures = 0  # consecutive failed connection attempts
        self._down_since: float | None = None
        self._retry_at = -math.inf
        self._last_error: str | None = None
        self._opened_total = 0
        self._failed_total = 0
        self._timeouts_total = 0
        self._apart: set[Connection] = set()

    # -- public API ----------------------------------------------------------------------

    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[Connection]:
        """Borrow a connection for the block (autocommit off; the block owns the transaction).

        Whatever the block leaves behind is cleaned up on exit (see the module
        docstring); this also happens when the block is cancelled.

        Args:
            timeout: seconds to wait for a connection; the pool's ``acquire_timeout`` when
                None.

        Raises:
            PoolTimeout: no connection could be had in time.
            PoolClosed: the pool is closed, or closed while waiting.
        """
        return _Lease(self, self.acquire_timeout if timeout is None else timeout)

    @asynccontextmanager
    async def transaction(self, timeout: float | None = None) -> AsyncIterator[Connection]:
        """Borrow a connection inside a transaction: committed if the block succeeds.

        Any exception, ``Cancelled`` included, rolls the transaction back (shielded,
        bounded by ``RESET_TIMEOUT``) and propagates. Calling ``conn.commit()`` or
        ``conn.rollback()`` in the block is an error; ``conn.transaction()`` nests a
        savepoint.

        Raises:
            PoolTimeout, PoolClosed: as :meth:`connection`.
            psycopg.Error: the commit failed (e.g. a serialization failure); the
                transaction is then rolled back.
        """
        async with self.connection(timeout) as conn:
            transaction = conn.transaction()
            await transaction.__aenter__()
            try:
                yield conn
            except BaseException as exc:
                suppress = False
                with trio.CancelScope(shield=True, deadline=trio.current_time() + RESET_TIMEOUT):
                    try:
                        # True only for psycopg.Rollback, which ends the block quietly.
                        suppress = bool(
                            await transaction.__aexit__(type(exc), exc, exc.__traceback__)
                        )
                    except psycopg.Error as rollback_error:
                        # The connection is broken or stuck: the release discards it.
                        logger.warning(
                            "rollback failed: %s",
                            type(rollback_error).__name__,
                            extra={"action": "db.rollback_failed", "pool": self.name},
                        )
                if not suppress:
                    raise
            else:
                await transaction.__aexit__(None, None, None)

    async def connect_apart(self) -> Connection:
        """A new connection to the pool's database that is not lent but given: the caller
        owns it (for ``LISTEN``), may close it, and the pool closes it when it closes.

        Raises:
            PoolClosed: the pool is closed.
            psycopg.OperationalError: the connection failed (the message never contains
                the password).
        """
        if self._closed:
            raise PoolClosed(f"the database pool {self.name!r} is closed")
        conn = await TrioConnection.connect(self._conninfo, connect_timeout=self.connect_timeout)
        if self._closed:
            await conn.close()
            raise PoolClosed(f"the database pool {self.name!r} is closed")
        self._apart = {c for c in self._apart if not c.closed} | {conn}
        return conn

    async def check(self, timeout: float | None = None) -> None:
        """One ``SELECT 1`` round trip, for a readiness probe; bounded by ``timeout``.

        Args:
            timeout: seconds for the whole check; the pool's ``acquire_timeout`` when None.

        Raises:
            DatabaseError: no connection, no answer in time, or the query failed (the
                subclasses PoolTimeout and PoolClosed included).
        """
        seconds = self.acquire_timeout if timeout is None else timeout
        deadline = trio.current_time() + seconds
        async with self.connection(timeout=seconds) as conn:
            with trio.move_on_at(deadline) as scope:
                try:
                    await conn.set_autocommit(True)  # one round trip, no BEGIN
                    await conn.execute("SELECT 1")
                except psycopg.Error as exc:
                    raise DatabaseError(
                        f"database check failed (pool {self.name!r}): {self._clean(exc)}"
                    ) from exc
        if scope.cancelled_caught:
            raise DatabaseError(
                f"the database did not answer within {seconds:g}s (pool {self.name!r})"
            )

    def stats(self) -> PoolStats:
        """The pool's current state and counters."""
        return PoolStats(
            name=self.name,
            max_size=self.max_size,
            size=self._size,
            idle=len(self._idle),
            in_use=self._size - len(self._idle),
            opening=self._opening,
            waiting=len(self._waiters),
            connections_opened_total=self._opened_total,
            connections_failed_total=self._failed_total,
            acquire_timeouts_total=self._timeouts_total,
        )

    # -- checkout ------------------------------------------------------------------------

    async def _acquire(self, timeout: float) -> _Entry:
        await trio.lowlevel.checkpoint_if_cancelled()
        await yield_to_foreground()  # queue work lets HTTP reads in flight go first
        deadline = trio.current_time() + timeout
        while True:
            entry = await self._take(deadline, timeout)
            try:
                problem = await self._checkout_problem(entry, deadline)
            except BaseException:
                # Cancelled mid-ping: the connection's state is unknown; do not leak it.
                await self._discard(entry, "checkout interrupted")
                raise
            if problem is None:
                return entry
            await self._discard(entry, problem)

    async def _take(self, deadline: float, timeout: float) -> _Entry:
        """The next idle connection, waiting in line for one if needed."""
        if self._closed:
            raise PoolClosed(f"the database pool {self.name!r} is closed")
        if self._idle and not self._waiters:
            return self._idle.pop()
        waiter = _Waiter(deadline=deadline)
        if deadline > trio.current_time():
            self._waiters.append(waiter)
            self._wakeup.set()
            # Timeouts are enforced by _expire_waiters(): one cancel scope per waiting
            # borrow would cost more than the rest of the borrow.
            if deadline < self._expiry_scope.deadline:
                self._expiry_scope.deadline = deadline
            try:
                await waiter.event.wait()
            except BaseException:
                self._forget(waiter)
                raise
            if waiter.entry is not None:
                return waiter.entry
            if waiter.error is not None:
                raise waiter.error
        self._timeouts_total += 1
        logger.warning(
            "no database connection within %gs",
            timeout,
            extra={
                "action": "db.acquire_timeout",
                "pool": self.name,
                "timeout": timeout,
                "waiting": len(self._waiters),
            },
        )
        reason = f": last connection attempt failed: {self._last_error}" if self._failures else ""
        raise PoolTimeout(
            f"no database connection available within {timeout:g}s (pool {self.name!r}){reason}"
        )

    def _forget(self, waiter: _Waiter) -> None:
        """Withdraw a waiter that gives up; a connection handed to it meanwhile goes back."""
        if waiter.entry is not None:
            entry, waiter.entry = waiter.entry, None
            self._put(entry)
        else:
            with suppress(ValueError):  # already served an error, or never queued
                self._waiters.remove(waiter)

    async def _checkout_problem(self, entry: _Entry, deadline: float) -> str | None:
        """Why an idle connection may not be handed out (pinging it if idle for long)."""
        conn = entry.conn
        now = trio.current_time()
        if now >= entry.expire_at:
            return "reached max_lifetime"
        if not conn.is_alive_nowait():
            return "closed by the server"
        if now - entry.idle_since < self.check_after_idle:
            return None
        with trio.move_on_at(deadline):
            try:
                await conn.set_autocommit(True)
                await conn.execute("")  # empty query: one round trip, no transaction
                await conn.set_autocommit(False)
            except psycopg.Error as exc:
                return f"ping failed ({type(exc).__name__})"
            return None
        return "no answer to a ping"

    # -- checkin -------------------------------------------------------------------------

    async def _release(self, entry: _Entry) -> None:
        """Take a connection back, clean; runs shielded (it follows cancellations too)."""
        reason = await self._reset(entry.conn)
        now = trio.current_time()
        if reason is None and now >= entry.expire_at:
            reason = "reached max_lifetime"
        if reason is None and self._closed:
            reason = "pool closed"
        if reason is not None:
            await self._discard(entry, reason)
            return
        entry.idle_since = now
        self._put(entry)

    async def _reset(self, conn: Connection) -> str | None:
        """Bring ``conn`` back to idle, autocommit off; the reason it cannot be, if so."""
        if conn.closed:
            return "broken" if conn.broken else "closed by its user"
        status = conn.info.transaction_status
        if status not in (IDLE, INTRANS, INERROR):
            return "returned with a query running"
        if status != IDLE:
            with trio.CancelScope(
                shield=True, deadline=trio.current_time() + RESET_TIMEOUT
            ) as scope:
                try:
                    await conn.rollback()
                except psycopg.Error as exc:
                    return f"rollback failed ({type(exc).__name__})"
            if scope.cancelled_caught:
                return f"rollback took longer than {RESET_TIMEOUT:g}s"
            if conn.closed or conn.info.transaction_status != IDLE:
                return "broken during rollback"
        # The setters do no I/O and take no checkpoint that a cancellation could hit
        # (the connection lock is free, their generators complete at once).
        try:
            if conn.autocommit:
                await conn.set_autocommit(False)
            if conn.isolation_level is not None:
                await conn.set_isolation_level(None)
            if conn.read_only is not None:
                await conn.set_read_only(None)
            if conn.deferrable is not None:
                await conn.set_deferrable(None)
        except psycopg.Error as exc:
            return f"reset failed ({type(exc).__name__})"
        return None

    def _put(self, entry: _Entry) -> None:
        """Hand an idle connection to the first waiter, or keep it."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.entry = entry
            waiter.event.set()
        else:
            self._idle.append(entry)

    async def _discard(self, entry: _Entry, reason: str) -> None:
        conn = entry.conn
        self._size -= 1
        if reason not in ("reached max_lifetime", "pool closed", "idle longer than max_idle"):
            logger.info(
                "discarding a database connection: %s",
                reason,
                extra={"action": "db.discard", "pool": self.name, "reason": reason},
            )
        with trio.CancelScope(shield=True):
            await conn.close()
        self._wakeup.set()  # replace it if needed

    # -- background: opening, replacing, expiring --------------------------------------

    def _needed(self) -> int:
        """How many connections to start opening now."""
        total = self._size + self._opening
        wanted = max(self.min_size - total, len(self._waiters) - self._opening)
        if self._failures:
            wanted = min(wanted, 1 - self._opening)  # server down: one probe at a time
        return max(0, min(wanted, self.max_size - total))

    async def _maintain(self) -> None:
        assert self._nursery is not None
        while True:
            if self._failures and trio.current_time() < self._retry_at:
                await trio.sleep_until(self._retry_at)
            for _ in range(self._needed()):
                self._opening += 1
                self._nursery.start_soon(self._open_one)
            await self._wakeup.wait()
            self._wakeup = trio.Event()

    async def _open_one(self) -> None:
        try:
            conn = await TrioConnection.connect(
                self._conninfo, connect_timeout=self.connect_timeout
            )
        except psycopg.Error as exc:
            self._opening -= 1
            self._connect_failed(exc)
            return
        finally:
            self._wakeup.set()
        self._opening -= 1
        self._opened_total += 1
        if self._failures:
            downtime = trio.current_time() - (self._down_since or 0.0)
            logger.info(
                "database connection re-established after %d failed attempts",
                self._failures,
                extra={
                    "action": "db.reconnected",
                    "pool": self.name,
                    "attempts": self._failures,
                    "downtime": round(downtime, 3),
                },
            )
            self._failures = 0
            self._down_since = None
        if self._closed:
            await conn.close()
            return
        now = trio.current_time()
        lifetime = self.max_lifetime * (1 - random.uniform(0, _LIFETIME_JITTER))
        self._size += 1
        self._put(_Entry(conn=conn, expire_at=now + lifetime, idle_since=now))

    def _connect_failed(self, exc: psycopg.Error) -> None:
        self._failed_total += 1
        self._failures += 1
        now = trio.current_time()
        if self._down_since is None:
            self._down_since = now
        self._last_error = self._clean(exc)
        delay = _backoff(self._failures)
        self._retry_at = now + delay
        logger.warning(
            "cannot connect to the database (attempt %d), retrying in %.2fs: %s",
            self._failures,
            delay,
            self._last_error,
            extra={
                "action": "db.reconnect",
                "pool": self.name,
                "attempt": self._failures,
                "delay": round(delay, 3),
                "error": self._last_error,
            },
        )

    async def _housekeeping(self) -> None:
        """Close idle connections that expired, stayed idle too long, or died."""
        interval = min(self.max_lifetime, self.max_idle, _MAX_HOUSEKEEPING_INTERVAL) / 4
        interval = max(interval, _MIN_HOUSEKEEPING_INTERVAL)
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            for entry in list(self._idle):
                if entry not in self._idle:
                    continue  # lent out meanwhile
                if now >= entry.expire_at:
                    reason = "reached max_lifetime"
                elif now - entry.idle_since >= self.max_idle and self._size > self.min_size:
                    reason = "idle longer than max_idle"
                elif not entry.conn.is_alive_nowait():
                    reason = "closed by the server"
                else:
                    continue
                self._idle.remove(entry)
                await self._discard(entry, reason)

    # -- lifecycle -----------------------------------------------------------------------

    async def _expire_waiters(self) -> None:
        """Time out waiters whose deadline passed; sleeps until the earliest one.

        Borrowers lower the deadline of ``_expiry_scope`` when they queue with an earlier
        deadline; it is never raised in between, so at worst this wakes up for a waiter
        served meanwhile, and then recomputes.
        """
        while True:
            with trio.CancelScope() as self._expiry_scope:
                self._expiry_scope.deadline = min(
                    (waiter.deadline for waiter in self._waiters), default=math.inf
                )
                await trio.sleep_forever()
            now = trio.current_time()
            for waiter in [w for w in self._waiters if w.deadline <= now]:
                self._waiters.remove(waiter)
                waiter.timed_out = True
                waiter.event.set()

    def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        nursery.start_soon(self._maintain)
        nursery.start_soon(self._housekeeping)
        nursery.start_soon(self._expire_waiters)

    async def _close(self) -> None:
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.error = PoolClosed(f"the database pool {self.name!r} was closed")
            waiter.event.set()
        with trio.CancelScope(shield=True):
            while self._idle:
                await self._discard(self._idle.pop(), "pool closed")
            for conn in self._apart:
                await conn.close()
            self._apart.clear()

    def _clean(self, exc: BaseException) -> str:
        """The error message, without the password of the conninfo, on one line."""
        message = " ".join(str(exc).split())
        if self._secret:
            message = message.replace(self._secret, "***")
        return message or type(exc).__name__


def _backoff(attempt: int) -> float:
    """Exponential backoff with 'equal jitter': between half and all of the step."""
    step = min(RECONNECT_MAX_DELAY, RECONNECT_BASE_DELAY * 2 ** (attempt - 1))
    return step / 2 + random.uniform(0, step / 2)


@asynccontextmanager
async def open_pool(
    conninfo: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    acquire_timeout: float = 10.0,
    max_lifetime: float = 3600.0,
    max_idle: float = 600.0,
    connect_timeout: float = 5.0,
    check_after_idle: float = 30.0,
    name: str = "main",
) -> AsyncIterator[Pool]:
    """Run a connection pool for the duration of the block.

    Returns without waiting for the database. Sizes and durations (seconds) are checked
    up front. On exit (normal, error or cancellation), background tasks stop, idle
    connections are closed and callers still waiting get :class:`PoolClosed`.

    Raises:
        ValueError: inconsistent sizes or non-positive durations.
    """
    if not 0 <= min_size <= max_size or max_size < 1:
        raise ValueError(
            f"need 0 <= min_size <= max_size and max_size >= 1, "
            f"got min_size={min_size}, max_size={max_size}"
        )
    durations: dict[str, float] = {
        "acquire_timeout": acquire_timeout,
        "max_lifetime": max_lifetime,
        "max_idle": max_idle,
        "connect_timeout": connect_timeout,
    }
    for key, value in durations.items():
        if not value > 0:
            raise ValueError(f"{key} must be positive, got {value!r}")
    if check_after_idle < 0:
        raise ValueError(f"check_after_idle must not be negative, got {check_after_idle!r}")
    pool = Pool(
        conninfo,
        name=name,
        min_size=min_size,
        max_size=max_size,
        acquire_timeout=acquire_timeout,
        max_lifetime=max_lifetime,
        max_idle=max_idle,
        connect_timeout=connect_timeout,
        check_after_idle=check_after_idle,
    )
    logger.info(
        "opening database pool %r",
        name,
        extra={
            "action": "db.pool_open",
            "pool": name,
            "min_size": min_size,
            "max_size": max_size,
            **_target(conninfo),
        },
    )
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        pool._start(nursery)
        try:
            yield pool
        except BaseException as exc:
            # Re-raised below, outside the nursery, so that callers see the exception
            # itself rather than an ExceptionGroup wrapping it.
            body_error = exc
        finally:
            await pool._close()
            nursery.cancel_scope.cancel()
    logger.info(
        "database pool %r closed",
        name,
        extra={
            "action": "db.pool_close",
            "pool": name,
            "connections_opened_total": pool.stats().connections_opened_total,
        },
    )
    if body_error is not None:
        raise body_error


def _target(conninfo: str) -> dict[str, Any]:
    """Where a conninfo points, for logs: never its password."""
    params = conninfo_to_dict(conninfo)
    return {f"db_{key}": params.get(key) for key in ("host", "port", "dbname", "user")}
