"""The cases module's errors (their place in the tree: :mod:`daemon.shared.errors`)."""

from __future__ import annotations

from daemon.shared.errors import DocumentError


class CaseNotFound(DocumentError):
    """No such case."""
