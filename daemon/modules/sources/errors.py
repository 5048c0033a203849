"""The sources module's errors (their place in the tree: :mod:`daemon.shared.errors`)."""

from __future__ import annotations

from daemon.shared.errors import DaemonError


class SourceError(DaemonError):
    """The source operation failed."""


class SourceNotFound(SourceError):
    """No such source."""


class DuplicateSourceName(SourceError):
    """A source with that name exists."""


class SourceNotPollable(SourceError):
    """The source is not polled: it receives documents, is built in or deleted."""
