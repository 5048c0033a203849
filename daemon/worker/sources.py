"""The ``sources.poll`` queue's handler: a poll of one source (fired by the source's
schedule, or enqueued by "poll now"; see :mod:`daemon.modules.sources.polling`).

A poll's own failures (the server is down, the feed is broken) are the source's health,
recorded by the poll: the job completes with the error in its result. Only an error of
the database or the process fails the attempt, and the retried job goes on where the
last committed batch left off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from daemon.composition import sources_config
from daemon.modules.sources import POLL_QUEUE, run_poll
from daemon.queue import PermanentFailure

if TYPE_CHECKING:
    from daemon.composition import Components
    from daemon.modules.sources import SourceMetrics
    from daemon.queue import HandlerRegistry, Job
    from daemon.shared.db.pool import Pool


def register_sources(
    registry: HandlerRegistry,
    pool: Pool,
    components: Components,
    metrics: SourceMetrics | None = None,
) -> None:
    """Register the poll handler (jobs on ``pool``)."""
    config = sources_config(components, metrics)

    async def poll(job: Job) -> dict[str, Any]:
        source_id = job.payload.get("source_id")
        if not isinstance(source_id, int) or isinstance(source_id, bool):
            raise PermanentFailure(f"payload has no integer source_id: {job.payload!r}")
        trigger = "manual" if job.payload.get("trigger") == "manual" else "schedule"
        result = await run_poll(pool, config, source_id, job_id=job.id, trigger=trigger)
        return attrs.asdict(result)

    registry.register(POLL_QUEUE, poll, concurrency=components.settings.source_poll_concurrency)
