"""The poller and scheduler groups of the supervisor, built from the settings.

* poller: the queue worker (fetchers, runners, completer, heartbeat, listener);
* scheduler: services that only enqueue or tidy up: queue maintenance (lease rescue,
  retention), cron schedules, and the modules' housekeeping (expired sessions, ...).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import trio

from daemon.queue import Maintenance, QueueMetrics, QueueWorker
from daemon.queue.scheduler import CronScheduler
from daemon.worker.handlers import build_registry
from daemon.worker.housekeeping import Housekeeping

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
    return QueueWorker(pool, registry, options, metrics)


def scheduler_group(
    components: Components, pool: Pool, metrics: QueueMetrics, main_pool: Pool
) -> ServiceSet:
    maintenance = Maintenance(pool, components.maintenance, metrics)
    cron = CronScheduler(pool, components.scheduler)
    housekeeping = Housekeeping(main_pool, components.auth, components.settings.ingest_max_attempts)
    return ServiceSet("scheduler", [maintenance, cron, housekeeping])


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
