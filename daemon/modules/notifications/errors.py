"""The notifications module's errors (their place in the tree: :mod:`daemon.shared.errors`)."""

from __future__ import annotations

from daemon.shared.errors import DaemonError


class NotificationError(DaemonError):
    """Notification channels and deliveries."""


class ChannelNotFound(NotificationError):
    """No such notification channel."""


class DuplicateChannel(NotificationError):
    """A notification channel with that name exists."""


class DeliveryFailed(NotificationError):
    """One delivery attempt failed (transient: the delivery is retried).

    ``permanent``: retrying cannot help (the message cannot be sent as it is, or the
    server refused it for good); the delivery is recorded failed at once."""

    def __init__(self, message: str | None = None, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
