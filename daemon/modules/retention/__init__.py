"""Retention: how long each kind of data is kept, legal holds, and the purge.

Public face::

    from daemon.modules.retention import RetentionConfig, Periods, BatchLimits, Kind
    from daemon.modules.retention import run_purge, due, list_runs, RunReport
    from daemon.modules.retention import place_hold, release_hold, list_holds, get_hold

See :mod:`daemon.modules.retention.purge` for the rules and docs/retention.md.
"""

from __future__ import annotations

from daemon.modules.retention.config import RetentionConfig
from daemon.modules.retention.errors import (
    LEGAL_HOLD_SQLSTATE,
    BatchOutOfTime,
    HoldAlreadyReleased,
    HoldNotFound,
    RetentionError,
    UnderLegalHold,
)
from daemon.modules.retention.holds import (
    TARGET_TYPES,
    Hold,
    get_hold,
    list_holds,
    place_hold,
    release_hold,
)
from daemon.modules.retention.purge import (
    Due,
    RunReport,
    due,
    list_runs,
    run_purge,
)
from daemon.modules.retention.rules import (
    RUN_ORDER,
    BatchLimits,
    Kind,
    Periods,
    report_line,
    smaller_batch,
)
from daemon.modules.retention.schedules import PURGE_QUEUE, purge_schedule

__all__ = [
    "LEGAL_HOLD_SQLSTATE",
    "PURGE_QUEUE",
    "RUN_ORDER",
    "TARGET_TYPES",
    "BatchLimits",
    "BatchOutOfTime",
    "Due",
    "Hold",
    "HoldAlreadyReleased",
    "HoldNotFound",
    "Kind",
    "Periods",
    "RetentionConfig",
    "RetentionError",
    "RunReport",
    "UnderLegalHold",
    "due",
    "get_hold",
    "list_holds",
    "list_runs",
    "place_hold",
    "purge_schedule",
    "release_hold",
    "report_line",
    "run_purge",
    "smaller_batch",
]
