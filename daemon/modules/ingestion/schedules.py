"""The ingestion module's periodic work, declared for the queue's scheduler.

Each declaration is a schedule (see :class:`daemon.queue.Schedule`) whose jobs the
worker adapter hands to the function named beside it; the process syncs the
declarations at start, and the scheduler fires each slot once across processes.
"""

from __future__ import annotations

from daemon.queue import Schedule

REQUEUE_STRANDED_QUEUE = "housekeeping.requeue_stranded"
PRUNE_IDEMPOTENCY_KEYS_QUEUE = "housekeeping.prune_idempotency_keys"

# Documents in a working state with no job of the pipeline get their step's job back
# (:func:`daemon.modules.ingestion.requeue_stranded`): every minute, so a document an
# operator's cancel stranded waits at most a minute past the stranding delay.
REQUEUE_STRANDED = Schedule(
    name="housekeeping.requeue_stranded", queue=REQUEUE_STRANDED_QUEUE, cron="* * * * *"
)
# Idempotency-Keys older than a day (:func:`daemon.modules.ingestion.prune_idempotency_keys`).
PRUNE_IDEMPOTENCY_KEYS = Schedule(
    name="housekeeping.prune_idempotency_keys",
    queue=PRUNE_IDEMPOTENCY_KEYS_QUEUE,
    interval=300.0,
)

SCHEDULES = (REQUEUE_STRANDED, PRUNE_IDEMPOTENCY_KEYS)
