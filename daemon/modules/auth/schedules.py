"""The auth module's periodic work, declared for the queue's scheduler.

Each declaration is a schedule (see :class:`daemon.queue.Schedule`) whose jobs the
worker adapter hands to the function named beside it; the process syncs the
declarations at start, and the scheduler fires each slot once across processes.
"""

from __future__ import annotations

from daemon.queue import Schedule

PRUNE_QUEUE = "housekeeping.auth_prune"

# Expired sessions and idle login-throttle counters (:func:`daemon.modules.auth.prune`).
PRUNE = Schedule(name="housekeeping.auth_prune", queue=PRUNE_QUEUE, interval=300.0)

SCHEDULES = (PRUNE,)
