"""The job queue engine: a Trio-native PostgreSQL ``SKIP LOCKED`` queue.

It knows nothing of documents; see ``docs/queue.md`` for the state diagram and the
guarantees. The public face::

    from daemon.queue import enqueue, enqueue_many, JobSpec, Job, RetryLater, ...
"""

from __future__ import annotations

from daemon.queue.admin import (
    JobRecord,
    QueueStats,
    cancel_job,
    configure_queue,
    get_job,
    list_jobs,
    pause_queue,
    queue_stats,
    resume_queue,
    retry_job,
)
from daemon.queue.enqueue import enqueue, enqueue_many
from daemon.queue.jobs import (
    Backoff,
    Enqueued,
    InvalidJobState,
    Job,
    JobNotFound,
    JobSpec,
    JobState,
    PermanentFailure,
    QueueError,
    RetryLater,
)
from daemon.queue.maintenance import Maintenance, MaintenanceOptions
from daemon.queue.metrics import QueueMetrics
from daemon.queue.store import QueuePolicy
from daemon.queue.worker import (
    BatchHandler,
    Handler,
    HandlerRegistry,
    QueueWorker,
    WorkerOptions,
)

__all__ = [
    "Backoff",
    "BatchHandler",
    "Enqueued",
    "Handler",
    "HandlerRegistry",
    "InvalidJobState",
    "Job",
    "JobNotFound",
    "JobRecord",
    "JobSpec",
    "JobState",
    "Maintenance",
    "MaintenanceOptions",
    "PermanentFailure",
    "QueueError",
    "QueueMetrics",
    "QueuePolicy",
    "QueueStats",
    "QueueWorker",
    "RetryLater",
    "WorkerOptions",
    "cancel_job",
    "configure_queue",
    "enqueue",
    "enqueue_many",
    "get_job",
    "list_jobs",
    "pause_queue",
    "queue_stats",
    "resume_queue",
    "retry_job",
]
