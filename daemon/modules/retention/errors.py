"""The retention module's errors (their place in the tree: :mod:`daemon.shared.errors`)."""

from __future__ import annotations

from daemon.shared.errors import DaemonError


class RetentionError(DaemonError):
    """A retention operation was refused."""


class HoldNotFound(RetentionError):
    """No such legal hold."""


class HoldAlreadyReleased(RetentionError):
    """The legal hold is already released."""


class BatchOutOfTime(RetentionError):
    """A one-row purge batch ran out of time (something holds its rows too long)."""
