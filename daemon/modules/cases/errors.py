"""The cases module's errors (their place in the tree: :mod:`daemon.shared.errors`)."""

from __future__ import annotations

from daemon.shared.errors import DocumentError


class CaseNotFound(DocumentError):
    """No such case."""


class InvalidCaseTransition(DocumentError):
    """The case's state does not allow this action; carries the ``status`` it is in."""

    def __init__(self, status: str, action: str) -> None:
        self.status = status
        self.action = action
        super().__init__(f"a case that is {status} cannot be {_past(action)}")


def _past(action: str) -> str:
    return {
        "acknowledge": "acknowledged",
        "assign": "assigned",
        "resolve": "resolved",
        "reopen": "reopened",
    }.get(action, action)


class StaleCaseVersion(DocumentError):
    """The case changed since the version given (If-Match); carries its ``version``."""

    def __init__(self, given: int | None, version: int) -> None:
        self.given = given
        self.version = version
        super().__init__(
            f"the case is at version {version}, not {given}: read it again and retry"
            if given is not None
            else f"If-Match does not name the case's version ({version})"
        )


class CaseVersionRequired(DocumentError):
    """This change needs If-Match with the case's version (its ETag)."""
