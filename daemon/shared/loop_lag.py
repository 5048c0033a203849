"""The event loop's lag: how late a task that asked to wake up is actually woken.

Every request, job and probe of the process shares one Trio loop; when CPU work holds
it (or the GIL it needs), everything waits. The monitor sleeps a fixed period and
records how much later than asked it woke, as ``triaged_event_loop_lag_seconds``: an
operator (and ``bench/api_load.py``) sees the loop's wait directly, not only its effect
on request latency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from daemon.shared.metrics import Registry

PERIOD = 0.05
"""Seconds between samples: 20 a second, negligible work."""

LAG_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
)


async def monitor_loop_lag(registry: Registry, period: float = PERIOD) -> None:
    """Sample the loop's lag every ``period`` seconds until cancelled."""
    lag = registry.histogram(
        "triaged_event_loop_lag_seconds",
        "How much later than asked a sleeping task was woken (sampled every 50 ms).",
        buckets=LAG_BUCKETS,
    )
    while True:
        asked = trio.current_time() + period
        await trio.sleep_until(asked)
        lag.observe(max(0.0, trio.current_time() - asked))
