"""The handler of ``notifications.deliver``: one job per delivery (see
:mod:`daemon.modules.notifications`). A failed attempt is rescheduled with the module's
backoff without spending a queue attempt (the delivery counts its own attempts); a
delivery out of attempts is recorded as failed in the case's history and its job fails
(dead-lettered); a worker killed mid-send leaves the job to the lease rescue, and the
same delivery id goes out again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daemon.modules import notifications
from daemon.queue import PermanentFailure, RetryLater

if TYPE_CHECKING:
    from daemon.composition import Components
    from daemon.queue import HandlerRegistry, Job
    from daemon.shared.db.pool import Pool

DELIVER_CONCURRENCY = 8


def register_notifications(registry: HandlerRegistry, pool: Pool, components: Components) -> None:
    options = components.notifications

    async def deliver(job: Job) -> dict[str, Any]:
        delivery_id = job.payload.get("delivery_id")
        if not isinstance(delivery_id, str):
            raise PermanentFailure(f"payload has no delivery_id: {job.payload!r}")
        outcome = await notifications.deliver(pool, delivery_id, options)
        if outcome.status == "retry":
            raise RetryLater(outcome.delay, outcome.reason)
        if outcome.status == "failed":
            raise PermanentFailure(outcome.reason)
        return {"delivery_id": delivery_id, "status": outcome.status}

    registry.register(notifications.DELIVER_QUEUE, deliver, concurrency=DELIVER_CONCURRENCY)
