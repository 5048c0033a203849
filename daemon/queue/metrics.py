"""The queue's own metrics: what happened to jobs in this process.

Depth per queue and state, and the age of the oldest due job, come from SQL:
:func:`daemon.queue.admin.queue_stats`.
"""

from __future__ import annotations

from daemon.shared.metrics import Label, Registry

OUTCOMES = ("completed", "retry", "failed", "snoozed", "released", "lost")
"""The values of the ``outcome`` label (anything else would be recorded as ``other``)."""

QUEUE_LABEL_LIMIT = 64
"""Queue names are the handlers' (registered at start): a closed set in practice; the
bound only makes sure a stray name in the table cannot add series without end."""


class QueueMetrics:
    """Counters and histograms the workers update; labels are (queue,) or (queue, outcome),
    both bounded (see :class:`daemon.shared.metrics.Label`)."""

    def __init__(self, registry: Registry | None = None) -> None:
        registry = registry or Registry()
        self.registry = registry  # where other metrics of the process's workers go
        queue = Label("queue", limit=QUEUE_LABEL_LIMIT)
        outcome = Label.closed("outcome", OUTCOMES)
        self.claimed = registry.counter(
            "triaged_jobs_claimed_total", "Jobs claimed by this process.", [queue]
        )
        self.finished = registry.counter(
            "triaged_jobs_finished_total",
            "Attempts ended in this process, by outcome (completed, retry, failed, "
            "snoozed, released, lost).",
            [queue, outcome],
        )
        self.rescued = registry.counter(
            "triaged_jobs_rescued_total",
            "Jobs whose lease expired, returned by maintenance.",
            [queue],
        )
        self.wait_seconds = registry.histogram(
            "triaged_job_wait_seconds", "Time from a job being due to its start.", [queue]
        )
        self.run_seconds = registry.histogram(
            "triaged_job_run_seconds", "Run time of an attempt.", [queue]
        )
