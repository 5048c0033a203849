"""The case lifecycle, a pure rule: which action a case's state allows, and what the
action changes.

States and actions::

    open --acknowledge--> acknowledged --resolve--> resolved
    open --resolve--> resolved
    acknowledged | resolved --reopen--> open
    open | acknowledged --assign--> (same state, another assignee or nobody)

(``closed``, a status no code writes any more, counts as resolved.) An action the state
does not allow raises :class:`InvalidCaseTransition`, naming the current state.

The escalation ladder: acknowledging or resolving stops it (``escalation_due_at`` None);
reopening restarts it: level 0, next step due ``now`` + the SLA of the case's severity.
Assigning leaves it as it is.

:func:`plan` reads only its arguments (the caller passes ``now`` and the SLA), so it is
tested without a database; :mod:`daemon.modules.cases.work` applies its result.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import attrs

from daemon.modules.cases.errors import InvalidCaseTransition
from daemon.shared.errors import ValidationFailed

if TYPE_CHECKING:
    from datetime import datetime, timedelta

MAX_NOTE_CHARS = 10_000


class CaseStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CLOSED = "closed"  # legacy: treated as resolved


class CaseAction(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    ASSIGN = "assign"
    RESOLVE = "resolve"
    REOPEN = "reopen"


_ALLOWED: dict[CaseAction, frozenset[CaseStatus]] = {
    CaseAction.ACKNOWLEDGE: frozenset({CaseStatus.OPEN}),
    CaseAction.ASSIGN: frozenset({CaseStatus.OPEN, CaseStatus.ACKNOWLEDGED}),
    CaseAction.RESOLVE: frozenset({CaseStatus.OPEN, CaseStatus.ACKNOWLEDGED}),
    CaseAction.REOPEN: frozenset({CaseStatus.ACKNOWLEDGED, CaseStatus.RESOLVED, CaseStatus.CLOSED}),
}

# The event each action records in the case's history.
EVENT_OF: dict[CaseAction, str] = {
    CaseAction.ACKNOWLEDGE: "acknowledged",
    CaseAction.ASSIGN: "assigned",
    CaseAction.RESOLVE: "resolved",
    CaseAction.REOPEN: "reopened",
}


@attrs.frozen(kw_only=True)
class CaseState:
    """What the rule needs to know of a case."""

    status: CaseStatus = attrs.field(converter=CaseStatus)
    assignee_user_id: int | None = None
    acknowledged_at: datetime | None = None


@attrs.frozen(kw_only=True)
class Request:
    """One action with its arguments: ``user_id`` for assign (None: nobody),
    ``resolution`` and ``note`` for resolve, ``note`` for reopen."""

    action: CaseAction = attrs.field(converter=CaseAction)
    user_id: int | None = None
    resolution: str | None = None
    note: str | None = None


@attrs.frozen(kw_only=True)
class Change:
    """The columns an action sets (``status`` etc.) and its event's detail. Every field of
    ``columns`` is written; a column absent is left as it is."""

    columns: dict[str, Any]
    event: str
    detail: dict[str, Any]


def allowed(status: CaseStatus | str, action: CaseAction | str) -> bool:
    return CaseStatus(status) in _ALLOWED[CaseAction(action)]


def plan(
    case: CaseState,
    request: Request,
    *,
    now: datetime,
    sla: timedelta,
    resolutions: tuple[str, ...],
) -> Change:
    """What ``request`` changes in ``case`` at ``now``; ``sla`` is the case severity's SLA
    (the ladder's restart on reopen), ``resolutions`` those allowed.

    Raises:
        InvalidCaseTransition: the case's status does not allow the action (carries it).
        ValidationFailed: a resolution not allowed, a note too long (names the field).
    """
    action = request.action
    if not allowed(case.status, action):
        raise InvalidCaseTransition(case.status.value, action.value)
    note = _note(request.note)
    if action is CaseAction.ACKNOWLEDGE:
        return Change(
            columns={
                "status": CaseStatus.ACKNOWLEDGED.value,
                "acknowledged_at": now,
                "escalation_due_at": None,
            },
            event=EVENT_OF[action],
            detail={},
        )
    if action is CaseAction.ASSIGN:
        return Change(
            columns={"assignee_user_id": request.user_id},
            event=EVENT_OF[action],
            detail={"from": case.assignee_user_id, "to": request.user_id},
        )
    if action is CaseAction.RESOLVE:
        if request.resolution not in resolutions:
            raise ValidationFailed(
                [{"field": "resolution", "message": f"one of: {', '.join(resolutions)}"}]
            )
        return Change(
            columns={
                "status": CaseStatus.RESOLVED.value,
                "resolution": request.resolution,
                "resolution_note": note,
                "resolved_at": now,
                "escalation_due_at": None,
            },
            event=EVENT_OF[action],
            detail={"resolution": request.resolution, "note": note},
        )
    return Change(
        columns={
            "status": CaseStatus.OPEN.value,
            "acknowledged_at": None,
            "resolved_at": None,
            "resolution": None,
            "resolution_note": None,
            "escalation_level": 0,
            "escalation_due_at": now + sla,
        },
        event=EVENT_OF[action],
        detail={
            "note": note,
            "from": case.status.value,
            "escalation_due_at": (now + sla).isoformat(),
        },
    )


def _note(note: str | None) -> str | None:
    if note is None or not note.strip():
        return None
    if len(note) > MAX_NOTE_CHARS:
        raise ValidationFailed(
            [{"field": "note", "message": f"at most {MAX_NOTE_CHARS} characters"}]
        )
    return note.strip()
