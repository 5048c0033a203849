"""The notifications module's periodic work, declared for the queue's scheduler: the
escalation check (its interval is a setting, so the declaration is built from it)."""

from __future__ import annotations

from daemon.queue import Schedule

ESCALATION_CHECK_QUEUE = "notifications.escalation_check"
DEFAULT_CHECK_INTERVAL_SECONDS = 60.0


def escalation_schedules(interval: float = DEFAULT_CHECK_INTERVAL_SECONDS) -> tuple[Schedule, ...]:
    """The escalation check every ``interval`` seconds
    (:func:`daemon.modules.notifications.run_escalation_check`)."""
    return (
        Schedule(
            name="notifications.escalation_check",
            queue=ESCALATION_CHECK_QUEUE,
            interval=interval,
        ),
    )


SCHEDULES = escalation_schedules()
