"""The retention module's errors (their place in the tree: :mod:`daemon.shared.errors`)."""

from __future__ import annotations

from daemon.shared.errors import DaemonError


class RetentionError(DaemonError):
    """A retention operation was refused."""


class UnderLegalHold(RetentionError):
    """The document or case is under legal hold: it cannot be deleted."""


# The SQLSTATE the database raises when a deletion would remove held data (0013).
LEGAL_HOLD_SQLSTATE = "55H01"


class HoldNotFound(RetentionError):
    """No such legal hold."""


class HoldAlreadyReleased(RetentionError):
    """The legal hold is already released."""


class BatchOutOfTime(RetentionError):
    """A one-row purge batch ran out of time (something holds its rows too long)."""
