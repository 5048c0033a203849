"""The retention module's configuration, built by the composition root."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from daemon.modules.retention.rules import BatchLimits, Periods
    from daemon.queue import Schedule


@attrs.frozen(kw_only=True)
class RetentionConfig:
    """- ``periods``: how long each kind is kept.
    - ``batch``: the bounds of one purge transaction.
    - ``schedule``: when the purge runs (declared, synced at start).
    - ``checkpoint_key``: the key signing audit checkpoints (None: the installation's).
    """

    periods: Periods
    batch: BatchLimits
    schedule: Schedule
    checkpoint_key: bytes | None = attrs.field(default=None, repr=False)
