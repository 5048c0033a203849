"""The circuit breaker in front of the model server: a pure state machine.

::

               N consecutive failures                probe_interval elapsed,
      CLOSED ─────────────────────────▶ OPEN ───────────────────────────────▶ HALF_OPEN
        ▲                                ▲        (the next call is the probe)    │
        │                                │                                        │
        │                                └──────────── the probe fails ───────────┤
        └────────────────────────────────── the probe succeeds ───────────────────┘

- CLOSED: every call goes through; a success resets the failure count.
- OPEN: no call goes through; :meth:`CircuitBreaker.before_call` answers how many
  seconds remain until the next probe (the caller turns that into "retry after").
- HALF_OPEN: exactly one call (the probe) is in flight; the others are refused with a
  short wait (:data:`PROBE_PENDING_RETRY`), since the probe is about to decide.

Only transient failures count (server errors, timeouts, broken connections,
misconfiguration answers such as 401); any other answer is a success, even one whose
content is invalid, and so is a 429: the server is up and has said when to come back
(the caller passes its Retry-After on). A probe that ends with neither (the caller was
cancelled) gives its slot back: the next call probes at once.

The clock is injected (any monotonic ``() -> seconds``), so tests drive time. The
breaker does no I/O and no logging: the ``record_*`` methods say whether the state
changed, and the caller logs. Not thread-safe; one Trio task at a time, as everything
here.
"""

from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable

PROBE_PENDING_RETRY = 2.0


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@attrs.define
class CircuitBreaker:
    """See the module docstring. ``failure_threshold`` >= 1, ``probe_interval`` > 0."""

    failure_threshold: int
    probe_interval: float
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    state: BreakerState = attrs.field(default=BreakerState.CLOSED, init=False)
    consecutive_failures: int = attrs.field(default=0, init=False)
    last_failure: str | None = attrs.field(default=None, init=False)
    opened_at: float | None = attrs.field(default=None, init=False)
    times_opened: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not self.probe_interval > 0:
            raise ValueError("probe_interval must be positive")

    def before_call(self) -> float | None:
        """``None`` if a call may go now (in OPEN past the interval it becomes the probe:
        the state turns HALF_OPEN), else the seconds to wait before asking again."""
        if self.state is BreakerState.CLOSED:
            return None
        if self.state is BreakerState.HALF_OPEN:
            return min(PROBE_PENDING_RETRY, self.probe_interval)
        remaining = self.next_probe_in()
        if remaining > 0:
            return remaining
        self.state = BreakerState.HALF_OPEN
        return None

    def next_probe_in(self) -> float:
        """Seconds until a probe may go (0 when one may go now or the circuit is not
        open)."""
        if self.state is not BreakerState.OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.probe_interval - self.clock())

    def record_success(self) -> bool:
        """A call got an answer. True if this closed the circuit."""
        was_open = self.state is not BreakerState.CLOSED
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.opened_at = None
        return was_open

    def record_failure(self, reason: str) -> bool:
        """A call failed transiently. True if this opened the circuit from CLOSED (a
        failed probe re-opens it, for another interval, and returns False)."""
        self.consecutive_failures += 1
        self.last_failure = reason
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN
            self.opened_at = self.clock()
            return False
        if self.state is BreakerState.CLOSED and (
            self.consecutive_failures >= self.failure_threshold
        ):
            self.state = BreakerState.OPEN
            self.opened_at = self.clock()
            self.times_opened += 1
            return True
        return False

    def record_abandoned(self) -> None:
        """A call ended with neither an answer nor a failure (it was cancelled): a probe
        gives its slot back, leaving the circuit open with the probe due now."""
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN
            self.opened_at = self.clock() - self.probe_interval

    @property
    def is_closed(self) -> bool:
        return self.state is BreakerState.CLOSED
