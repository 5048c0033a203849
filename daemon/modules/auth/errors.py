"""The auth module's errors: authentication, users, sessions and API keys (their place
in the tree: :mod:`daemon.shared.errors`)."""

from __future__ import annotations

from daemon.shared.errors import DaemonError


class AuthError(DaemonError):
    """Authentication or account management failed."""


class InvalidCredentials(AuthError):
    """Invalid email or password."""


class Unauthenticated(AuthError):
    """Missing, invalid, expired or revoked credentials."""


class LoginThrottled(AuthError):
    """Too many failed logins; try again later."""

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message or f"too many failed logins; try again in {retry_after} s")


class PermissionDenied(AuthError):
    """Your role does not allow this."""


class InvalidAccountData(AuthError):
    """A field of the user or API key is invalid."""

    def __init__(self, field: str, message: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class WeakPassword(InvalidAccountData):
    """The password does not meet the password policy."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__("password", message)


class UserNotFound(AuthError):
    """No such user."""


class ApiKeyNotFound(AuthError):
    """No such API key."""


class DuplicateEmail(AuthError):
    """A user with this email already exists."""


class LastAdmin(AuthError):
    """The last active admin cannot be demoted, disabled or deleted."""
