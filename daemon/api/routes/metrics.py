"""``/metrics``: Prometheus text exposition of this process, plus queue depths from SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
import trio
from quart import Blueprint, Response

from daemon.api.access import Reply, requires
from daemon.api.context import current_context
from daemon.modules.auth import Role
from daemon.modules.cases import CaseCounts, case_counts
from daemon.modules.ingestion import document_counts
from daemon.modules.notifications import notification_counts
from daemon.queue import queue_stats
from daemon.shared.errors import DatabaseError
from daemon.shared.metrics import Gauge, Histogram, Label, Metric, exposition

if TYPE_CHECKING:
    from daemon.shared.config import Settings

blueprint = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SCRAPE_DATABASE_TIMEOUT_SECONDS = 2.0
_STATES = ("created", "retry", "active", "completed", "cancelled", "failed")
# Time to acknowledge a case, seconds: a minute to a week.
ACKNOWLEDGE_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200, 604800)


def _public(settings: Settings) -> bool:
    return settings.metrics_public


@blueprint.get("/metrics")
@requires(
    Role.VIEWER,
    public_when=_public,
    replies={200: Reply(media_type="text/plain", description="Prometheus text format 0.0.4")},
)
async def metrics() -> Response:
    """Counters and histograms of this process; queue depths and backlog age from the
    database (shared by every process: scrape one, or aggregate with ``max``)."""
    context = current_context()
    scraped: list[Metric] = []
    up = Gauge("triaged_database_up", "1 when the metrics scrape could read the database.")
    scraped.append(up)
    stats = documents = cases = None
    with trio.move_on_after(SCRAPE_DATABASE_TIMEOUT_SECONDS):
        try:
            async with context.db.connection(timeout=SCRAPE_DATABASE_TIMEOUT_SECONDS) as conn:
                stats = await queue_stats(conn)
                documents = await document_counts(conn)
                cases = await case_counts(conn, ACKNOWLEDGE_BUCKETS)
        except (DatabaseError, psycopg.Error):
            stats = documents = cases = None
    if stats is None or documents is None or cases is None:
        up.set(0)
    else:
        up.set(1)
        jobs = Gauge("triaged_queue_jobs", "Jobs in the queue table by state.", ["queue", "state"])
        oldest = Gauge(
            "triaged_queue_oldest_available_seconds",
            "Age of the oldest job that is due and waiting (0: none).",
            ["queue"],
        )
        paused = Gauge("triaged_queue_paused", "1 when the queue is paused.", ["queue"])
        for queue in stats:
            for state in _STATES:
                jobs.set(getattr(queue, state), queue.name, state)
            oldest.set(queue.oldest_available_seconds or 0.0, queue.name)
            paused.set(1 if queue.paused else 0, queue.name)
        by_state = Gauge("triaged_documents", "Documents by pipeline state.", ["state"])
        for state, count in documents.items():
            by_state.set(count, state)
        scraped += [jobs, oldest, paused, by_state, *case_metrics(cases)]
    draining = Gauge("triaged_draining", "1 while the process shuts down.")
    draining.set(1 if context.health.draining else 0)
    scraped.append(draining)
    scraped += await _notification_metrics()
    for source in context.metric_sources:
        scraped += source()
    text = exposition([*context.registry.metrics.values(), *scraped])
    return Response(text, content_type=CONTENT_TYPE)


async def _notification_metrics() -> list[Metric]:
    """Escalations by severity and level, deliveries by channel kind and outcome (from
    the database; nothing when it cannot be read in time)."""
    counts = None
    with trio.move_on_after(SCRAPE_DATABASE_TIMEOUT_SECONDS):
        try:
            async with current_context().db.connection(
                timeout=SCRAPE_DATABASE_TIMEOUT_SECONDS
            ) as conn:
                counts = await notification_counts(conn)
        except (DatabaseError, psycopg.Error):
            counts = None
    if counts is None:
        return []
    escalations = Gauge(
        "triaged_case_escalations",
        "Escalation levels fired, by case severity and level.",
        [
            Label.closed("severity", ("low", "medium", "high", "critical")),
            Label.closed("level", [str(n) for n in range(1, 21)]),
        ],
    )
    deliveries = Gauge(
        "triaged_notification_deliveries",
        "Notification deliveries by channel kind and outcome (pending, delivered, failed).",
        [
            Label.closed("kind", ("webhook", "email")),
            Label.closed("outcome", ("pending", "delivered", "failed")),
        ],
    )
    fired, delivered = counts
    for (severity, level), count in fired.items():
        escalations.set(count, severity, str(level))
    for (kind, status), count in delivered.items():
        deliveries.set(count, kind, status)
    return [escalations, deliveries]


def case_metrics(counts: CaseCounts) -> list[Metric]:
    """Cases not resolved by status, severity and escalation level; open cases past
    their deadline by severity; time from opening to acknowledgement (every case's, read
    from the database: the same from whichever process is scraped)."""
    unresolved = Gauge(
        "triaged_cases_unresolved",
        "Cases open or acknowledged, by status, severity and escalation level.",
        ["status", "severity", "level"],
    )
    for (status, severity, level), count in sorted(counts.unresolved.items()):
        unresolved.set(count, status, severity, str(level))
    overdue = Gauge(
        "triaged_cases_overdue",
        "Open cases (not acknowledged) past their SLA deadline, by severity.",
        ["severity"],
    )
    for severity, count in sorted(counts.overdue.items()):
        overdue.set(count, severity)
    acknowledge = Histogram(
        "triaged_case_time_to_acknowledge_seconds",
        "Seconds from a case's opening to its acknowledgement, over acknowledged cases.",
        buckets=counts.bounds,
    )
    acknowledge.counts[()] = list(counts.acknowledge_buckets)
    acknowledge.sums[()] = counts.acknowledge_seconds
    return [unresolved, overdue, acknowledge]
