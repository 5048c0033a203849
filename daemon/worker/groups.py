"""The poller and scheduler groups of the supervisor, built from the settings.

* poller: the queue worker (fetchers, runners, completer, heartbeat, listener);
* scheduler: services that only enqueue or tidy up: queue maintenance (lease rescue,
  retention), cron schedules, and the modules' housekeeping (expired sessions, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from daemon.queue import (
    Maintenance,
    MaintenanceOptions,
    QueueMetrics,
    QueueWorker,
    WorkerOptions,
)
from daemon.queue.scheduler import CronScheduler, SchedulerOptions
from daemon.worker.handlers import build_registry
from daemon.worker.housekeeping import Housekeeping

if TYPE_CHECKING:
    from daemon.modules.analysis.factory import AnalyzerSet
    from daemon.shared.config import Settings
    from daemon.shared.db.pool import Pool
    from daemon.shared.service import Service


def poller_group(
    settings: Settings,
    pool: Pool,
    conninfo: str,
    metrics: QueueMetrics,
    main_pool: Pool,
    analyzers: AnalyzerSet | None = None,
) -> QueueWorker:
    """The queue worker: its bookkeeping on ``pool``, the handlers on ``main_pool``."""
    options = WorkerOptions(
        lease_seconds=settings.queue_lease_seconds,
        poll_interval=settings.queue_poll_interval_seconds,
        listen=settings.queue_listen,
        conninfo=conninfo,
    )
    return QueueWorker(pool, build_registry(settings, main_pool, analyzers), options, metrics)


def scheduler_group(
    settings: Settings, pool: Pool, metrics: QueueMetrics, main_pool: Pool
) -> ServiceSet:
    maintenance = Maintenance(
        pool,
        MaintenanceOptions(
            rescue_interval=settings.queue_rescue_interval_seconds,
            retain_completed_seconds=settings.queue_retain_completed_seconds,
            retain_failed_seconds=settings.queue_retain_failed_seconds,
        ),
        metrics,
    )
    cron = CronScheduler(
        pool, SchedulerOptions(catch_up_seconds=settings.scheduler_catch_up_seconds)
    )
    return ServiceSet("scheduler", [maintenance, cron, Housekeeping(main_pool, settings)])


class ServiceSet:
    """Several services run, and stopped, as one group."""

    def __init__(self, name: str, services: list[Service]) -> None:
        self.name = name
        self.services = services

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for service in self.services:
                await nursery.start(service.run)
            task_status.started()

    def request_stop(self) -> None:
        for service in self.services:
            service.request_stop()
