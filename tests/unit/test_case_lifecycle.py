"""The case lifecycle rule, without a database: which actions each state allows, what
each changes, and the escalation ladder stopped by acknowledge/resolve, restarted by
reopen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.modules.cases import (
    CaseAction,
    CaseState,
    InvalidCaseTransition,
    Request,
    allowed,
    plan,
)
from daemon.shared.errors import ValidationFailed

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SLA = timedelta(hours=4)
RESOLUTIONS = ("fixed", "false_positive", "duplicate", "wont_fix")


def run(status, action, **request):
    return plan(
        CaseState(status=status, assignee_user_id=7),
        Request(action=action, **request),
        now=NOW,
        sla=SLA,
        resolutions=RESOLUTIONS,
    )


ALLOWED = {
    ("open", "acknowledge"), ("open", "assign"), ("open", "resolve"),
    ("acknowledged", "assign"), ("acknowledged", "resolve"), ("acknowledged", "reopen"),
    ("resolved", "reopen"), ("closed", "reopen"),
}  # fmt: skip


@pytest.mark.parametrize("status", ["open", "acknowledged", "resolved", "closed"])
@pytest.mark.parametrize("action", [a.value for a in CaseAction])
def test_each_state_allows_exactly_its_actions(status, action):
    assert allowed(status, action) is ((status, action) in ALLOWED)
    extra = {"resolution": "fixed"} if action == "resolve" else {}
    if (status, action) in ALLOWED:
        run(status, action, **extra)
    else:
        with pytest.raises(InvalidCaseTransition) as raised:
            run(status, action, **extra)
        assert raised.value.status == status  # the API answers 409 with it
        assert status in raised.value.message


def test_acknowledge_stops_the_ladder():
    change = run("open", "acknowledge")
    assert change.columns == {
        "status": "acknowledged", "acknowledged_at": NOW, "escalation_due_at": None,
    }  # fmt: skip
    assert change.event == "acknowledged"


def test_resolve_stops_the_ladder_and_keeps_resolution_and_note():
    change = run("acknowledged", "resolve", resolution="duplicate", note="  see #12 ")
    assert change.columns["status"] == "resolved"
    assert change.columns["escalation_due_at"] is None
    assert (change.columns["resolution"], change.columns["resolution_note"]) == (
        "duplicate", "see #12",
    )  # fmt: skip
    assert change.columns["resolved_at"] == NOW
    assert change.detail == {"resolution": "duplicate", "note": "see #12"}


@pytest.mark.parametrize("resolution", [None, "", "FIXED", "done"])
def test_a_resolution_not_configured_names_the_field(resolution):
    with pytest.raises(ValidationFailed) as raised:
        run("open", "resolve", resolution=resolution)
    assert raised.value.errors[0]["field"] == "resolution"


def test_configured_resolutions_replace_the_defaults():
    change = plan(
        CaseState(status="open"),
        Request(action="resolve", resolution="mitigated"),
        now=NOW,
        sla=SLA,
        resolutions=("mitigated",),
    )
    assert change.columns["resolution"] == "mitigated"


@pytest.mark.parametrize("status", ["acknowledged", "resolved"])
def test_reopen_restarts_the_ladder_from_level_zero(status):
    change = run(status, "reopen", note="came back")
    assert change.columns["status"] == "open"
    assert change.columns["escalation_level"] == 0
    assert change.columns["escalation_due_at"] == NOW + SLA
    assert change.columns["acknowledged_at"] is None
    assert change.columns["resolution"] is None and change.columns["resolved_at"] is None
    assert change.detail["note"] == "came back" and change.detail["from"] == status


def test_assign_changes_only_the_assignee():
    change = run("acknowledged", "assign", user_id=9)
    assert change.columns == {"assignee_user_id": 9}
    assert change.detail == {"from": 7, "to": 9}
    assert run("open", "assign", user_id=None).columns == {"assignee_user_id": None}


def test_a_note_too_long_names_the_field():
    with pytest.raises(ValidationFailed) as raised:
        run("resolved", "reopen", note="x" * 10_001)
    assert raised.value.errors[0]["field"] == "note"
