"""The retention module's periodic work: the purge, declared for the queue's scheduler.

Its timing comes from the settings (``TRIAGED_RETENTION_PURGE_CRON`` and
``TRIAGED_RETENTION_PURGE_TIMEZONE``), so the declaration is built by the composition
root (:func:`purge_schedule`); the worker adapter hands its jobs to
:func:`daemon.modules.retention.run_purge`.
"""

from __future__ import annotations

from daemon.queue import Schedule

PURGE_QUEUE = "retention.purge"
PURGE_SCHEDULE_NAME = "retention.purge"


def purge_schedule(cron: str, timezone: str) -> Schedule:
    """The purge's schedule. Raises InvalidSchedule (a bad cron or time zone)."""
    return Schedule(name=PURGE_SCHEDULE_NAME, queue=PURGE_QUEUE, cron=cron, timezone=timezone)
