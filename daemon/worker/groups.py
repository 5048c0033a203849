"""The poller and scheduler groups of the supervisor, built from the components.

* poller: the queue worker (fetchers, runners, completer, heartbeat, listener, due scan);
* scheduler: the cron scheduler, which enqueues the jobs of schedules (the modules'
  periodic work among them: see :mod:`daemon.worker.housekeeping`), and the queue's own
  maintenance (lease rescue, retention of finished jobs).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import trio

from daemon.modules.sources import SourceMetrics
from daemon.queue import CronScheduler, Maintenance, QueueMetrics, QueueWorker
from daemon.worker.handlers import build_registry
from daemon.worker.housekeeping import register_housekeeping
from daemon.worker.notification_handlers import register_notifications
from daemon.worker.sources import register_sources

if TYPE_CHECKING:
    from daemon.composition import Components
    from daemon.modules.analysis import AnalyzerSet
    from daemon.shared.db.pool import Pool
    from daemon.shared.service import Service


def poller_group(
    components: Components,
    pool: Pool,
    conninfo: str,
    metrics: QueueMetrics,
    main_pool: Pool,
    analyzers: AnalyzerSet | None = None,
) -> QueueWorker:
    """The queue worker: its bookkeeping on ``pool``, the handlers on ``main_pool``."""
    options = dataclasses.replace(components.worker, conninfo=conninfo)
    registry = build_registry(components, main_pool, analyzers)
    register_housekeeping(registry, main_pool, components)
    register_sources(registry, main_pool, components, SourceMetrics(metrics.registry))
    register_notifications(registry, main_pool, components)
    return QueueWorker(pool, registry, options, metrics)


def scheduler_group(components: Components, pool: Pool, metrics: QueueMetrics) -> ServiceSet:
    maintenance = Maintenance(pool, components.maintenance, metrics)
    cron = CronScheduler(pool, components.scheduler)
    return ServiceSet("scheduler", [maintenance, cron])


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
