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
from daemon.queue.declared_schedules import SyncReport, sync_declared_schedules
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
from daemon.queue.poller import QueueWorker, WorkerOptions
from daemon.queue.registry import BatchHandler, Handler, HandlerRegistry
from daemon.queue.schedule_timing import (
    InvalidSchedule,
    Schedule,
    ScheduleNotFound,
    ScheduleRecord,
)
from daemon.queue.scheduler import CronScheduler, SchedulerOptions
from daemon.queue.store import QueuePolicy

__all__ = [
    "Backoff",
    "BatchHandler",
    "CronScheduler",
    "Enqueued",
    "Handler",
    "HandlerRegistry",
    "InvalidJobState",
    "InvalidSchedule",
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
    "Schedule",
    "ScheduleNotFound",
    "ScheduleRecord",
    "SchedulerOptions",
    "SyncReport",
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
    "sync_declared_schedules",
]
