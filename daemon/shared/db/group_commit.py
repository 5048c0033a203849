"""Group commit: concurrent callers' writes share one transaction.

Under load, many requests each write a little (a document intake is a handful of rows):
paid one transaction each, the round trips and the commit's WAL flush dominate. A
:class:`GroupCommit` writes what its callers submit in batches, one batch at a time:
while a batch is being written, new submissions queue up, and the next batch takes them
all. An idle writer writes a lone submission at once (nothing lingers waiting for
company), so batching costs no latency; it appears by itself when callers overlap.

There is no background task. The oldest waiting caller writes the next batch (its own
item first) and then hands the lead to the oldest caller still waiting, so every caller
is answered as soon as its own batch is written.

Contract of :meth:`GroupCommit.submit`:

* The item is written exactly once, in one call of ``write`` with up to ``max_batch``
  items; its result (or its exception) is returned (raised) to its caller.
* A caller cancelled while its item waits withdraws it: it is not written. Once its
  batch is being written, the write runs to its end (shielded from the caller's
  cancellation, bounded by ``write_timeout``): a write that reached the database is
  never abandoned halfway.
* ``write`` receives the items in submission order and returns one result or
  ``Exception`` per item, in the same order; if it raises, every item of the batch gets
  that exception.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Generic, TypeVar

import trio

from daemon.shared.errors import DatabaseError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

T = TypeVar("T")
R = TypeVar("R")


class _Entry(Generic[T, R]):
    __slots__ = ("item", "leads", "outcome", "settled", "taken", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.wake = trio.Event()
        self.leads = False  # this caller writes the next batch
        self.taken = False  # in a batch being written
        self.outcome: R | Exception | None = None
        self.settled = False

    def settle(self, outcome: R | Exception) -> None:
        self.outcome = outcome
        self.settled = True
        self.wake.set()

    def unwrap(self) -> R:
        outcome = self.outcome
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[return-value]


class GroupCommit(Generic[T, R]):
    """Batches concurrent submissions into calls of ``write`` (see the module docstring)."""

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]],
        *,
        max_batch: int = 64,
        weight: Callable[[T], int] | None = None,
        max_weight: int | None = None,
        write_timeout: float = 120.0,
    ) -> None:
        """``weight`` and ``max_weight``: a batch's items weigh at most ``max_weight``
        together (bytes, say), except a batch of one heavier item."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write = write
        self._max_batch = max_batch
        self._weight = weight
        self._max_weight = max_weight
        self._write_timeout = write_timeout
        self._waiting: deque[_Entry[T, R]] = deque()
        self._leading = False  # a caller is writing a batch, or has been handed the lead
        self.batches = 0  # written so far (for tests and metrics)

    async def submit(self, item: T) -> R:
        entry: _Entry[T, R] = _Entry(item)
        self._waiting.append(entry)
        if not self._leading:
            self._leading = True
            entry.leads = True
        else:
            try:
                await entry.wake.wait()
            except BaseException:
                if not entry.taken and not entry.settled:
                    self._waiting.remove(entry)  # withdrawn: never written
                    if entry.leads:
                        self._hand_over()
                raise
            if not entry.leads:
                return entry.unwrap()
        try:
            await self._write_next_batch()
        finally:
            self._hand_over()
        return entry.unwrap()

    def _take_batch(self) -> list[_Entry[T, R]]:
        batch = [self._waiting.popleft()]
        total = self._weight(batch[0].item) if self._weight else 0
        while self._waiting and len(batch) < self._max_batch:
            if self._weight is not None and self._max_weight is not None:
                weight = self._weight(self._waiting[0].item)
                if total + weight > self._max_weight:
                    break
                total += weight
            batch.append(self._waiting.popleft())
        for entry in batch:
            entry.taken = True
        return batch

    async def _write_next_batch(self) -> None:
        batch = self._take_batch()
        outcomes: Sequence[R | Exception] = []
        try:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + self._write_timeout
                try:
                    outcomes = await self._write([entry.item for entry in batch])
                except Exception as exc:
                    outcomes = [exc] * len(batch)
            if scope.cancelled_caught:
                timeout = DatabaseError(f"the write did not finish within {self._write_timeout:g}s")
                outcomes = [timeout] * len(batch)
            if len(outcomes) != len(batch):
                mismatch = RuntimeError(f"write returned {len(outcomes)} outcomes for {len(batch)}")
                outcomes = [mismatch] * len(batch)
        finally:
            self.batches += 1
            for index, entry in enumerate(batch):
                # Whatever happened, no caller is left waiting (a BaseException, such as
                # KeyboardInterrupt, settles them with a plain error).
                if index < len(outcomes):
                    entry.settle(outcomes[index])
                else:
                    entry.settle(RuntimeError("the write was interrupted"))

    def _hand_over(self) -> None:
        """The lead goes to the oldest caller still waiting, or lapses."""
        if self._waiting:
            following = self._waiting[0]
            following.leads = True
            following.wake.set()
        else:
            self._leading = False
