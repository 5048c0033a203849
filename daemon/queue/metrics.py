"""The queue's own metrics: what happened to jobs in this process, and depth from SQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from daemon.queue.store import SQL
from daemon.shared.metrics import Registry

if TYPE_CHECKING:
    from daemon.shared.db.psycopg_trio import TrioConnection


class QueueMetrics:
    """Counters and histograms the workers update; labels are (queue,) or (queue, outcome)."""

    def __init__(self, registry: Registry | None = None) -> None:
        registry = registry or Registry()
        self.claimed = registry.counter(
            "triaged_jobs_claimed_total", "Jobs claimed by this process.", ["queue"]
        )
        self.finished = registry.counter(
            "triaged_jobs_finished_total",
            "Attempts ended in this process, by outcome (completed, retry, failed, "
            "snoozed, released, lost).",
            ["queue", "outcome"],
        )
        self.rescued = registry.counter(
            "triaged_jobs_rescued_total",
            "Jobs whose lease expired, returned by maintenance.",
            ["queue"],
        )
        self.wait_seconds = registry.histogram(
            "triaged_job_wait_seconds", "Time from a job being due to its start.", ["queue"]
        )
        self.run_seconds = registry.histogram(
            "triaged_job_run_seconds", "Run time of an attempt.", ["queue"]
        )


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    by_state: dict[str, int]
    oldest_available_seconds: float | None


async def queue_depths(conn: TrioConnection) -> list[QueueDepth]:
    """Jobs per queue and state, and the age of each queue's oldest available job."""
    depths: dict[str, dict[str, int]] = {}
    for queue, state, count in await (await conn.execute(SQL["queue_depths"])).fetchall():
        depths.setdefault(queue, {})[state] = int(count)
    oldest = {
        queue: float(age)
        for queue, age in await (await conn.execute(SQL["oldest_available"])).fetchall()
    }
    return [
        QueueDepth(queue=q, by_state=states, oldest_available_seconds=oldest.get(q))
        for q, states in sorted(depths.items())
    ]
