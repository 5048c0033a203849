"""The escalation policy rule: which level a due case should be at, and when next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.modules.notifications import EscalationPolicy, next_step, parse_policy

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = parse_policy(
    '{"high": {"levels": [{"after": "0s", "channels": ["ops-webhook"]},'
    ' {"after": "1h", "channels": ["ops-webhook", "lead-email"],'
    '  "assign_to": "lead@example.com"},'
    ' {"after": "30m", "channels": ["pager"]}]},'
    ' "low": {"levels": [{"after": "2h", "channels": ["digest"]}]}}'
)


def test_level_one_fires_at_the_deadline_with_a_zero_delay() -> None:
    step = next_step(POLICY, "high", 0, T0, T0)
    assert step.level == 1
    assert step.fired is not None and step.fired.channels == ("ops-webhook",)
    assert step.next_due_at == T0 + timedelta(hours=1)


def test_each_level_fires_after_the_previous_one() -> None:
    step = next_step(POLICY, "high", 1, T0 + timedelta(hours=1), T0 + timedelta(hours=1))
    assert step.level == 2
    assert step.fired is not None and step.fired.assign_to == "lead@example.com"
    assert step.next_due_at == T0 + timedelta(hours=1, minutes=30)
    top = next_step(POLICY, "high", 2, step.next_due_at, step.next_due_at)
    assert top.level == 3 and top.next_due_at is None
    assert top.fired is not None and top.fired.channels == ("pager",)


def test_a_case_due_while_down_jumps_to_its_level_with_one_step() -> None:
    step = next_step(POLICY, "high", 0, T0, T0 + timedelta(hours=1, minutes=10))
    assert step.level == 2  # levels 1 and 2 passed; one step, level 2's channels
    assert step.fired is not None and step.fired.channels == ("ops-webhook", "lead-email")
    assert step.next_due_at == T0 + timedelta(hours=1, minutes=30)
    far = next_step(POLICY, "high", 0, T0, T0 + timedelta(days=3))
    assert far.level == 3 and far.next_due_at is None and far.fired == POLICY.ladder("high")[2]


def test_a_first_delay_waits_without_firing() -> None:
    early = next_step(POLICY, "low", 0, T0, T0 + timedelta(minutes=5))
    assert early.level == 0 and early.fired is None
    assert early.next_due_at == T0 + timedelta(hours=2)
    late = next_step(POLICY, "low", 0, T0, T0 + timedelta(hours=2))
    assert late.level == 1 and late.next_due_at is None


def test_a_severity_without_a_ladder_or_a_level_above_the_top_stops() -> None:
    assert next_step(POLICY, "medium", 0, T0, T0 + timedelta(days=1)).next_due_at is None
    above = next_step(POLICY, "low", 5, T0, T0 + timedelta(days=1))
    assert above.level == 5 and above.fired is None and above.next_due_at is None
    assert next_step(EscalationPolicy(), "high", 0, T0, T0).fired is None


def test_before_the_due_time_nothing_fires() -> None:
    step = next_step(POLICY, "high", 1, T0 + timedelta(hours=1), T0 + timedelta(minutes=59))
    assert step.level == 1 and step.fired is None
    assert step.next_due_at == T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[]", "expected an object"),
        ("{", "not valid JSON"),
        ('{"urgent": {"levels": [{"after": "1h"}]}}', "unknown severity 'urgent'"),
        ('{"high": {"levels": []}}', "high.levels"),
        ('{"high": {"levels": [{"channels": []}]}}', "high.levels[0].after: required"),
        ('{"high": {"levels": [{"after": "soon"}]}}', "high.levels[0].after"),
        ('{"high": {"levels": [{"after": -1}]}}', "at least 0"),
        ('{"high": {"levels": [{"after": "1h", "channels": ["Bad Name"]}]}}', "channels"),
        ('{"high": {"levels": [{"after": "1h", "assign_to": "nobody"}]}}', "assign_to"),
        ('{"high": {"levels": [{"after": "1h", "notify": []}]}}', "unknown field(s) notify"),
    ],
)
def test_an_invalid_policy_names_the_fault(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_policy(text)
    assert named in str(caught.value)


def test_describe_round_trips() -> None:
    import json

    assert parse_policy(json.dumps(POLICY.describe())) == POLICY
    assert POLICY.channel_names() == {"ops-webhook", "lead-email", "pager", "digest"}


def test_the_setting_or_its_file_is_parsed_at_start_and_errors_name_the_variable(
    tmp_path,
) -> None:
    from daemon.composition import escalation_policy
    from daemon.shared.config import Settings
    from daemon.shared.errors import ConfigError

    text = '{"high": {"levels": [{"after": "0s", "channels": ["ops"]}]}}'
    assert escalation_policy(Settings(escalation_policy=text)) == parse_policy(text)
    assert escalation_policy(Settings()).ladders == {}
    policy_file = tmp_path / "escalation.json"
    policy_file.write_text(text)
    assert escalation_policy(Settings(escalation_policy_file=policy_file)) == parse_policy(text)
    cases = [
        ({"escalation_policy": '{"high": {}}'}, "TRIAGED_ESCALATION_POLICY: high"),
        ({"escalation_policy_file": tmp_path / "missing.json"}, "TRIAGED_ESCALATION_POLICY_FILE"),
        (
            {"escalation_policy": text, "escalation_policy_file": policy_file},
            "not both",
        ),
    ]
    for fields, named in cases:
        with pytest.raises(ConfigError) as caught:
            escalation_policy(Settings(**fields))
        assert named in str(caught.value), caught.value
