"""The pure rules of retention: the kinds of data, their order in a run, their periods,
and how a purge batch shrinks when it runs out of time. No I/O."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

import attrs


class Kind(StrEnum):
    """What the purge deletes; the values name the kinds in run reports."""

    RESOLVED_CASES = "resolved_cases"
    COMPLETED_DOCUMENTS = "completed_documents"
    FAILED_DOCUMENTS = "failed_documents"
    DUPLICATE_DOCUMENTS = "duplicate_documents"
    DOCUMENT_HISTORY = "document_history"
    AUDIT_EVENTS = "audit_events"


# Dependency order: a case goes before its document (a document with a case left is
# kept), documents before the history of what remains, the audit log last (the run's own
# deletions are not audited per row; its report is).
RUN_ORDER = tuple(Kind)

# The document state each document kind purges.
DOCUMENT_STATES = {
    Kind.COMPLETED_DOCUMENTS: "completed",
    Kind.FAILED_DOCUMENTS: "failed",
    Kind.DUPLICATE_DOCUMENTS: "duplicate",
}


def _positive(instance: object, attribute: attrs.Attribute[timedelta], value: timedelta) -> None:
    if value <= timedelta(0):
        raise ValueError(f"{attribute.name} must be positive")


@attrs.frozen(kw_only=True)
class Periods:
    """How long each kind is kept after its row reached its end: a document its terminal
    state (``finished_at``), a case its resolution, an event its time."""

    completed_documents: timedelta = attrs.field(validator=_positive)
    failed_documents: timedelta = attrs.field(validator=_positive)
    duplicate_documents: timedelta = attrs.field(validator=_positive)
    resolved_cases: timedelta = attrs.field(validator=_positive)
    document_history: timedelta = attrs.field(validator=_positive)
    audit_events: timedelta = attrs.field(validator=_positive)

    def of(self, kind: Kind) -> timedelta:
        period: timedelta = getattr(self, kind.value)
        return period


@attrs.frozen(kw_only=True)
class BatchLimits:
    """How big one purge transaction may get: ``rows`` at most, ``seconds`` of statement
    time at most (a batch over it is cancelled by the database and retried smaller)."""

    rows: int = 500
    seconds: float = 5.0

    def __attrs_post_init__(self) -> None:
        if self.rows < 1 or self.seconds <= 0:
            raise ValueError("a batch needs at least one row and some time")


def smaller_batch(rows: int) -> int | None:
    """The batch size to retry with after a batch of ``rows`` ran out of time: half of
    it; None when a single row did (the run then fails: something holds it too long)."""
    return None if rows <= 1 else rows // 2


def report_line(kind: Kind, counts: dict[str, float]) -> str:
    """One line of a run report for people (the CLI, the log)."""
    deleted = int(counts.get("deleted", 0))
    held = int(counts.get("held", 0))
    seconds = float(counts.get("seconds", 0.0))
    return f"{kind.value:<20} deleted {deleted:>8}  kept by holds {held:>6}  {seconds:8.3f} s"
