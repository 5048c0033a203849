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


class WebhookRefused(SourceError):
    """The delivery is not authenticated: a missing or bad signature, a timestamp outside
    the tolerance window, a malformed delivery id, or a signature accepted before."""


class DeliveryConflict(SourceError):
    """This delivery id was already received with a different body."""


class SourceDisabled(SourceError):
    """The source is disabled: it takes no deliveries until an admin enables it."""


class DirectoryRefused(SourceError):
    """The directory is not under an allowed root (TRIAGED_SOURCE_DIRECTORY_ROOTS)."""
