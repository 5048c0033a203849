"""Reads first: queue work steps aside while HTTP reads are in flight on the same loop.

One event loop serves the API and runs the queue's jobs (``triaged serve``). Trio runs
every task that is ready in one batch before it looks at the sockets again, so a read
that needs five or six such rounds (request, authentication query, list query, response)
waits at each round for whatever else is ready: while a backlog drains, that is the
steps' batches, and a 5 ms read took 50-200 ms (``bench/README.md``).

:class:`LoopPriority` has two sides:

* **foreground**: the HTTP edge marks each read (GET, HEAD, OPTIONS) from its start
  until its response starts going out (its first body chunk: a CSV export streams for
  minutes, and a client that stops reading must not hold the queue back):
  :meth:`LoopPriority.foreground`;
* **background**: the queue's groups (poller and scheduler, marked by the supervisor
  with :meth:`LoopPriority.background`) and the HTTP requests that are not reads
  (uploads, writes: :meth:`LoopPriority.background_block`) run their tasks, and every
  task they start, with this object in a context variable; shared code calls
  :func:`yield_to_foreground` at points where such work may wait a little without
  holding anything others need: a database pool checkout (never while a connection is
  held, which would make a read wait for a connection held by a waiting task), a
  hand-off to the CPU pools. While a read is in flight, a background task there waits until no read
  is in flight, or ``max_defer`` seconds at most, so queue work never starves: under a
  steady stream of reads it still passes each such point at least every ``max_defer``.

Nothing else changes for the background: a task already holding a connection finishes
its transaction; a cancelled wait raises ``Cancelled`` as any checkpoint does. Outside
a background group (HTTP tasks, one-shot commands, tests) :func:`yield_to_foreground`
returns at once.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_MAX_DEFER = 0.05  # seconds a background task waits at one point, at most

_background: contextvars.ContextVar[LoopPriority | None] = contextvars.ContextVar(
    "triaged_background", default=None
)


class LoopPriority:
    """Foreground reads before background work on one event loop (one per process)."""

    def __init__(self, max_defer: float = DEFAULT_MAX_DEFER) -> None:
        self.max_defer = max_defer
        self._in_flight = 0
        self._quiet = trio.Event()
        self._quiet.set()
        self.deferrals = 0  # background waits that found a read in flight (for tests)

    @property
    def in_flight(self) -> int:
        """Foreground work in flight now."""
        return self._in_flight

    def foreground(self) -> Foreground:
        """Foreground work from now until the returned handle ends (its block exits, or
        :meth:`Foreground.end`); such spans may nest and overlap."""
        self._in_flight += 1
        if self._in_flight == 1:
            self._quiet = trio.Event()
        return Foreground(self)

    def _end_foreground(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._quiet.set()

    def background(self) -> None:
        """Mark the calling task, and every task it starts from now on, as background."""
        _background.set(self)

    @contextmanager
    def background_block(self) -> Iterator[None]:
        """The calling task (and tasks it starts in the block) as background."""
        token = _background.set(self)
        try:
            yield
        finally:
            _background.reset(token)

    async def step_aside(self) -> None:
        """Wait while foreground work is in flight, ``max_defer`` seconds at most."""
        if self._in_flight == 0:
            return
        self.deferrals += 1
        with trio.move_on_after(self.max_defer):
            await self._quiet.wait()


class Foreground:
    """One span of foreground work: ends once, at :meth:`end` or at the end of its block."""

    def __init__(self, priority: LoopPriority) -> None:
        self._priority: LoopPriority | None = priority

    def end(self) -> None:
        """End the span now (idempotent): e.g. when a response starts streaming."""
        if self._priority is not None:
            self._priority._end_foreground()
            self._priority = None

    def __enter__(self) -> Foreground:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end()


async def yield_to_foreground() -> None:
    """In a background task: :meth:`LoopPriority.step_aside`; elsewhere nothing (no
    checkpoint either)."""
    priority = _background.get()
    if priority is not None:
        await priority.step_aside()
