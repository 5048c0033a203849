"""The exports module's errors (their place in the tree: :mod:`daemon.shared.errors`)."""

from __future__ import annotations

from daemon.shared.errors import DaemonError


class ExportsBusy(DaemonError):
    """As many exports run as this process allows; try again shortly."""

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        self.retry_after = retry_after
        super().__init__(message)
