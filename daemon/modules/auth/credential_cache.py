"""A short-lived cache, per process, of the principals behind bearer tokens, with every
revocation still effective on the next request, in this process and in any other.

Why: looking a token up is a database round trip on every request, the most expensive
part of an idle read after the read itself (issue 16).

Contract:

* **Entries.** Keyed by the SHA-256 of the token (the token itself is never kept); an
  entry lives at most ``ttl`` seconds and never past the credential's own expiry, taken
  from the database's clock at lookup and kept on this process's monotonic clock (no
  clock skew between hosts). Unknown or refused tokens are never cached.
* **Invalidation.** Every change that could end or narrow a credential (a key revoked or
  changed, a session revoked or deleted, a user disabled, deleted, or given another
  role, email or password) fires a trigger (migration 0015) that notifies the channel
  :data:`CHANNEL` as it commits, whichever code or tool made the change. Each process
  holds one ``LISTEN`` connection (outside the pool, :meth:`Pool.connect_apart`), and
  before it uses any entry it reads what arrived on it, without waiting: any
  notification empties the whole cache. The code that revokes in this process also
  calls :meth:`CredentialCache.invalidate` itself (see ``daemon/api/authn.py``).
* **A listener is trusted only while proven.** It is verified at most ``verify_after``
  seconds before an entry is used, by a round trip in which it notifies itself and must
  hear itself back (which fails behind a pooler that drops ``LISTEN``); that round trip
  also brings in every notification committed before it. A listener that fails, is
  closed, or does not hear itself is closed, the cache emptied, and entries are not
  used until a new listener is verified: connecting is retried on a request's path at
  most every ``retry_after`` seconds; meanwhile every request looks its token up, as
  without a cache.
* **No stale store.** A lookup is stored only if no notification arrived (and the
  listener stayed verified) between the moment it was decided to look up and the moment
  its answer is stored.
* **Off** (``enabled=False``; the process's ``TRIAGED_QUEUE_LISTEN=false``, for poolers
  that drop ``LISTEN``): every request looks its token up.

What remains: PostgreSQL signals the listening sessions as the revoking transaction
commits, before the revoking client hears of the commit; the listening session then
writes the notification to its socket. A request reaching another process after the
revoking client heard of the commit finds it there unless that server process was not
yet scheduled to write it (microseconds on a machine that is not overloaded). Within
the revoking process, the explicit invalidation leaves no such window.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import attrs
import psycopg
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from daemon.modules.auth.roles import Principal
    from daemon.shared.db.psycopg_trio import TrioConnection

log = logging.getLogger("triaged.auth")

CHANNEL = "triaged_auth"
DEFAULT_TTL_SECONDS = 10.0
DEFAULT_VERIFY_SECONDS = 2.0
DEFAULT_RETRY_SECONDS = 5.0
DEFAULT_MAX_ENTRIES = 10_000
LISTENER_TIMEOUT_SECONDS = 2.0  # connecting or verifying the listener, on a request's path


@attrs.define(eq=False)
class _Entry:
    principal: Principal
    until: float  # trio.current_time() after which the entry is dead


@attrs.frozen
class Ticket:
    """Permission to store the answer of one lookup (see :meth:`CredentialCache.lookup`)."""

    generation: int


class CredentialCache:
    """See the module docstring. One per process (per app); not thread-safe (Trio)."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[TrioConnection]] | None,
        *,
        enabled: bool = True,
        ttl: float = DEFAULT_TTL_SECONDS,
        verify_after: float = DEFAULT_VERIFY_SECONDS,
        retry_after: float = DEFAULT_RETRY_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._connect = connect if enabled else None
        self.ttl = ttl
        self.verify_after = verify_after
        self.retry_after = retry_after
        self.max_entries = max_entries
        self._entries: dict[bytes, _Entry] = {}
        self.hits = 0  # lookups answered from the cache
        self._generation = 0
        self._listener: TrioConnection | None = None
        self._verified_at = -float("inf")
        self._retry_at = -float("inf")
        self._busy = False  # a task is connecting or verifying the listener
        self._nonce: str | None = None
        self._heard = False
        # Its own channel for the self-checks: on the shared one, every process's check
        # would empty every other process's cache, and pile up in idle ones.
        self._check_channel = f"{CHANNEL}_check_{secrets.token_hex(8)}"

    def __len__(self) -> int:
        """How many principals are cached (dead entries included until looked up)."""
        return len(self._entries)

    # -- the request's side --------------------------------------------------------------

    async def lookup(self, digest: bytes) -> tuple[Principal | None, Ticket | None]:
        """The cached principal of ``digest`` if any, else ``(None, ticket)``: pass the
        ticket to :meth:`store` with the database's answer (``None``: do not store)."""
        if not await self._ready():
            return None, None
        entry = self._entries.get(digest)
        if entry is not None:
            if trio.current_time() < entry.until:
                self.hits += 1
                return entry.principal, None
            del self._entries[digest]
        return None, Ticket(self._generation)

    def store(
        self,
        ticket: Ticket | None,
        digest: bytes,
        principal: Principal,
        *,
        started: float,
        lifetime: float | None,
    ) -> None:
        """Keep ``principal`` (looked up from ``started``, ``trio.current_time()``; its
        credential expires ``lifetime`` seconds after the lookup, None: never) unless a
        change was notified since the ticket was given."""
        if ticket is None or not self._trusted():
            return
        self._drain()
        if ticket.generation != self._generation:
            return
        seconds = self.ttl if lifetime is None else min(self.ttl, lifetime)
        if seconds <= 0:
            return
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[digest] = _Entry(principal=principal, until=started + seconds)

    def invalidate(self) -> None:
        """Forget every entry (a credential changed); lookups in flight are not stored."""
        self._entries.clear()
        self._generation += 1

    # -- the listener --------------------------------------------------------------------

    def _trusted(self) -> bool:
        return (
            self._listener is not None
            and not self._listener.closed
            and trio.current_time() - self._verified_at < self.verify_after
        )

    async def _ready(self) -> bool:
        """Whether entries may be used now: the listener is live, verified lately, and
        everything it received has been applied. May verify or reconnect it (bounded by
        LISTENER_TIMEOUT_SECONDS); False whenever that is under way in another task."""
        if self._connect is None or self._busy:
            return False
        if self._listener is not None:
            self._drain()
        if self._trusted():
            return True
        if self._listener is None and trio.current_time() < self._retry_at:
            return False
        self._busy = True
        try:
            with trio.move_on_after(LISTENER_TIMEOUT_SECONDS):
                if self._listener is None:
                    await self._open()
                await self._verify()
        except (psycopg.Error, OSError) as exc:
            await self._lose(f"{type(exc).__name__}")
        finally:
            self._busy = False
        if not self._trusted():
            await self._lose("no answer in time")
            return False
        return True

    async def _open(self) -> None:
        assert self._connect is not None
        self._retry_at = trio.current_time() + self.retry_after
        conn = await self._connect()
        self._listener = conn
        conn.add_notify_handler(self._on_notify)
        await conn.set_autocommit(True)
        await conn.execute(f"LISTEN {CHANNEL}")
        await conn.execute(f"LISTEN {self._check_channel}")  # hex: a safe identifier
        self.invalidate()  # whatever was cached was not covered by a listener

    async def _verify(self) -> None:
        """One round trip in which the listener notifies itself; it must hear it."""
        conn = self._listener
        assert conn is not None
        self._nonce, self._heard = secrets.token_hex(8), False
        started = trio.current_time()
        await conn.execute("SELECT pg_notify(%s, %s)", (self._check_channel, self._nonce))
        if not self._heard:
            raise psycopg.OperationalError("the listener did not hear its own notification")
        self._verified_at = started

    def _on_notify(self, notify: psycopg.Notify) -> None:
        if notify.channel == self._check_channel:
            if self._nonce is not None and notify.payload == self._nonce:
                self._heard = True
            return
        self.invalidate()

    def _drain(self) -> None:
        """Apply what the listener received, without waiting (no checkpoint)."""
        conn = self._listener
        if conn is None or self._busy:
            return
        pgconn = conn.pgconn
        try:
            # Reads what arrived (notifications are buffered) and sees an end of file.
            if not conn.is_alive_nowait():
                raise psycopg.OperationalError("the listener connection was closed")
            while (notify := pgconn.notifies()) is not None:
                self._on_notify(
                    psycopg.Notify(notify.relname.decode(), notify.extra.decode(), notify.be_pid)
                )
        except psycopg.Error:
            self._drop("the listener connection failed")

    def _drop(self, reason: str) -> None:
        """Stop trusting the listener at once, and close it (no checkpoint)."""
        self.invalidate()
        self._verified_at = -float("inf")
        listener, self._listener = self._listener, None
        if listener is not None:
            log.warning(
                "credential cache off until its listener is back: %s",
                reason,
                extra={"action": "auth.cache_listener_lost", "reason": reason},
            )
            listener.pgconn.finish()  # psycopg then sees the connection as closed

    async def _lose(self, reason: str) -> None:
        listener = self._listener
        self._drop(reason)
        if listener is not None:
            with trio.CancelScope(shield=True):
                await listener.close()
