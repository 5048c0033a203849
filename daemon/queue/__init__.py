"""The job queue engine: a Trio-native PostgreSQL ``SKIP LOCKED`` queue.

It knows nothing of documents; see ``docs/queue.md`` for the state diagram and the
guarantees. The public face::

    from daemon.queue import enqueue, enqueue_many, JobSpec, Job, RetryLater, ...
"""

from __future__ import annotations

from daemon.queue.admin import (
    MAX_LIST_LIMIT,
    JobRecord,
    QueueStats,
    cancel_job,
    check_queue_name,
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
from daemon.queue.schedule_store import (
    delete_schedule,
    list_schedules,
    save_schedule,
    set_enabled,
)
from daemon.queue.schedule_timing import (
    InvalidSchedule,
    Schedule,
    ScheduleNotFound,
    ScheduleRecord,
    check_cron,
    check_name,
    check_payload,
    parse_duration,
    parse_timezone,
)
from daemon.queue.scheduler import CronScheduler, SchedulerOptions
from daemon.queue.store import QueuePolicy

__all__ = [
    "MAX_LIST_LIMIT",
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
    "check_cron",
    "check_name",
    "check_payload",
    "check_queue_name",
    "configure_queue",
    "delete_schedule",
    "enqueue",
    "enqueue_many",
    "get_job",
    "list_jobs",
    "list_schedules",
    "parse_duration",
    "parse_timezone",
    "pause_queue",
    "queue_stats",
    "resume_queue",
    "retry_job",
    "save_schedule",
    "set_enabled",
    "sync_declared_schedules",
]
