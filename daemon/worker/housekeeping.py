"""The modules' periodic work: their declared schedules and the handlers of their jobs.

A module declares its schedules (``SCHEDULES`` in its ``schedules`` module, exported by
its face); this adapter gathers them for the sync at start (:func:`declared_schedules`)
and registers, for each one's queue, a handler that calls the module's function
(:func:`register_housekeeping`). A slot's job is an ordinary job: leases, retries with
backoff, drain and metrics apply, and the cron scheduler fires each slot once however
many processes run. Every handler is idempotent, so a retried or late slot does no harm;
each queue runs one job at a time per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daemon.modules import auth, ingestion, notifications, retention

if TYPE_CHECKING:
    from daemon.composition import Components
    from daemon.queue import HandlerRegistry, Job, Schedule
    from daemon.shared.db.pool import Pool


def declared_schedules(components: Components) -> tuple[Schedule, ...]:
    """Every schedule the modules declare (the built-in schedules); ``components`` give
    the timings that are settings (the escalation check's interval, the purge's time)."""
    escalation = notifications.escalation_schedules(
        components.settings.escalation_check_interval_seconds
    )
    return (*auth.SCHEDULES, *ingestion.SCHEDULES, *escalation, components.purge.schedule)


def register_housekeeping(registry: HandlerRegistry, pool: Pool, components: Components) -> None:
    """Register the handler of every declared schedule's queue (jobs on ``pool``)."""
    policy = components.auth
    max_attempts = components.settings.ingest_max_attempts

    async def auth_prune(job: Job) -> dict[str, Any]:
        pruned = await auth.prune(pool, policy)
        return {"sessions": pruned.sessions, "throttle_rows": pruned.throttle_rows}

    async def requeue_stranded(job: Job) -> dict[str, Any]:
        return {"documents": await ingestion.requeue_stranded(pool, max_attempts=max_attempts)}

    async def prune_idempotency_keys(job: Job) -> dict[str, Any]:
        return {"keys": await ingestion.prune_idempotency_keys(pool)}

    async def retention_purge(job: Job) -> dict[str, Any]:
        report = await retention.run_purge(pool, components.purge, job_id=job.id)
        return {"run_id": report.id, "report": report.report}

    async def escalation_check(job: Job) -> dict[str, Any]:
        report = await notifications.run_escalation_check(pool, components.escalation)
        return {
            "examined": report.examined,
            "escalated": report.escalated,
            "reassigned": report.reassigned,
        }

    handlers = {
        auth.PRUNE_QUEUE: auth_prune,
        ingestion.REQUEUE_STRANDED_QUEUE: requeue_stranded,
        ingestion.PRUNE_IDEMPOTENCY_KEYS_QUEUE: prune_idempotency_keys,
        retention.PURGE_QUEUE: retention_purge,
        notifications.ESCALATION_CHECK_QUEUE: escalation_check,
    }
    declared = {schedule.queue for schedule in declared_schedules(components)}
    if declared != set(handlers):  # a declaration without a handler would pile up jobs
        raise RuntimeError(
            f"declared schedule queues without a handler: {declared ^ set(handlers)}"
        )
    for queue, handler in handlers.items():
        registry.register(queue, handler, concurrency=1)
