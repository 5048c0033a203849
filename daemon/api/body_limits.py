"""Request bodies in flight: a deadline on reading each, a budget of bytes for all.

- **Deadline.** A body must have arrived whole within ``body_timeout`` seconds of the
  request's start (headers read). A client trickling a byte every few seconds is cut off
  with 408, on every route, the anonymous login included.
- **Budget.** A request body sits in memory while it is parsed and stored, so the bytes
  of all bodies being received or handled at once are bounded by a process-wide
  :class:`BodyBudget`. A request declaring a ``Content-Length`` takes its share before
  a byte of the body is read; a chunked body takes it as its bytes arrive. A body that
  does not fit is refused with 503 and ``Retry-After`` (nothing of it was stored: a
  refused upload is never half-accepted). The share is given back when the exchange
  ends, however it ends (answered, refused, client gone, cancelled).

Used by :class:`daemon.api.edge.Edge`, which answers the 408 and the 503.
"""

from __future__ import annotations

import enum
from typing import Any

import trio

Message = dict[str, Any]


class BodyBudget:
    """Bytes of request bodies the process holds at once (see the module docstring).

    Not thread-safe: used from the event loop only.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def try_take(self, size: int) -> bool:
        """Take ``size`` bytes if they fit under the limit; ``False`` (nothing taken) if not."""
        if size > 0 and self.in_flight + size > self.limit:
            return False
        self.in_flight += size
        return True

    def give_back(self, size: int) -> None:
        self.in_flight -= size


class BodyFault(enum.Enum):
    """Why a request's body was cut off."""

    TOO_SLOW = "too_slow"
    OVER_BUDGET = "over_budget"


class BodyReader:
    """One request's ``receive`` under the deadline and the budget.

    ``receive`` passes the server's messages through until the body is complete; on a
    fault it records it in :attr:`fault`, cancels ``app_scope`` (the app and everything
    it started) and never returns. Call :meth:`close` when the exchange ends.
    """

    def __init__(
        self,
        receive: Any,
        *,
        budget: BodyBudget,
        deadline: float,
        app_scope: trio.CancelScope,
    ) -> None:
        self._receive = receive
        self._budget = budget
        self._deadline = deadline
        self._app_scope = app_scope
        self.held = 0
        self.received = 0
        self.complete = False
        self.fault: BodyFault | None = None

    def admit(self, declared: int | None) -> bool:
        """Take the declared length from the budget before any byte is read."""
        if declared is None or self._budget.try_take(declared):
            self.held = declared or 0
            return True
        self.fault = BodyFault.OVER_BUDGET
        return False

    async def receive(self) -> Message:
        if self.complete:
            return await self._receive()  # the app waiting for a disconnect: no deadline
        message: Message | None = None
        with trio.move_on_at(self._deadline):
            message = await self._receive()
        if message is None:
            await self._fail(BodyFault.TOO_SLOW)
        assert message is not None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.held:
                if not self._budget.try_take(self.received - self.held):
                    await self._fail(BodyFault.OVER_BUDGET)
                self.held = self.received
            self.complete = not message.get("more_body", False)
        else:
            self.complete = True  # http.disconnect
        return message

    async def _fail(self, fault: BodyFault) -> None:
        self.fault = fault
        self._app_scope.cancel()
        await trio.lowlevel.checkpoint()  # raises Cancelled: the scope is cancelled
        raise AssertionError("unreachable: the app's scope is cancelled")  # pragma: no cover

    def close(self) -> None:
        """Give the body's share back (idempotent)."""
        self._budget.give_back(self.held)
        self.held = 0
