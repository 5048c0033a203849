"""Routing rules: whether an analysis opens a case, its SLA due time, assignee and tags,
and the parser of the rules' configuration text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from daemon.modules.analysis import (
    DEFAULT_SEVERITY_RULES,
    DEFAULT_TAXONOMY,
    Analysis,
    AnalysisRequest,
    Severity,
    heuristic_analysis,
    parse_taxonomy,
)
from daemon.modules.cases import (
    DEFAULT_SLA,
    RoutingDecision,
    RoutingRules,
    decide,
    parse_duration,
    parse_routing_rules,
)

NOW = datetime(2024, 6, 3, 9, 30, tzinfo=UTC)
DEFAULTS = RoutingRules()


def analysis(category="billing", severity="low", confidence=0.6):
    return Analysis(
        category=category,
        severity=severity,
        summary="Something happened.",
        confidence=confidence,
    )


# -- Decisions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "severity", "opens", "due_in"),
    [
        ("billing", "low", False, None),
        ("billing", "medium", False, None),
        ("outage", "high", True, timedelta(hours=4)),
        ("outage", "critical", True, timedelta(hours=1)),
        ("security", "medium", True, timedelta(hours=24)),  # by category
        ("privacy", "low", True, timedelta(hours=72)),  # by category
        ("legal", "critical", True, timedelta(hours=1)),  # both
        ("other", "low", False, None),
    ],
)
def test_default_rules(category, severity, opens, due_in):
    decision = decide(analysis(category, severity), DEFAULTS, NOW)
    assert decision.open_case is opens
    assert decision.severity is Severity(severity)
    assert decision.sla_due_at == (NOW + due_in if due_in else None)
    assert decision.tags[:2] == (f"category:{category}", f"severity:{severity}")


@pytest.mark.parametrize("severity", list(Severity))
def test_sla_follows_severity(severity):
    rules = RoutingRules(
        min_severity="low",
        sla={"critical": "15m", "high": "2h", "medium": "1d", "low": "1w"},
    )
    expected = {"critical": 900, "high": 7200, "medium": 86_400, "low": 604_800}
    decision = decide(analysis("billing", severity), rules, NOW)
    assert decision.open_case
    assert decision.sla_due_at == NOW + timedelta(seconds=expected[severity])


def test_default_sla_table():
    assert dict(DEFAULT_SLA) == {
        Severity.CRITICAL: timedelta(hours=1),
        Severity.HIGH: timedelta(hours=4),
        Severity.MEDIUM: timedelta(hours=24),
        Severity.LOW: timedelta(hours=72),
    }
    assert RoutingRules().sla == DEFAULT_SLA


def test_due_time_keeps_the_callers_time_zone():
    paris = timezone(timedelta(hours=2))
    now = datetime(2024, 6, 3, 23, 30, tzinfo=paris)
    due = decide(analysis("outage", "critical"), DEFAULTS, now).sla_due_at
    assert due == datetime(2024, 6, 4, 0, 30, tzinfo=paris)
    assert due.utcoffset() == timedelta(hours=2)


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(analysis("outage", "critical"), DEFAULTS, datetime(2024, 6, 3, 9, 30))


def test_assignee_by_category_else_default_and_only_with_a_case():
    rules = RoutingRules(
        assignees={"security": "secops", "outage": "sre-oncall"}, default_assignee="triage"
    )
    assert decide(analysis("security", "medium"), rules, NOW).assignee == "secops"
    assert decide(analysis("outage", "critical"), rules, NOW).assignee == "sre-oncall"
    assert decide(analysis("billing", "high"), rules, NOW).assignee == "triage"
    assert decide(analysis("billing", "low"), rules, NOW).assignee is None  # no case
    assert decide(analysis("billing", "high"), DEFAULTS, NOW).assignee is None


def test_tags_are_given_with_or_without_a_case():
    rules = RoutingRules(tags={"billing": ["finance", "severity:low"], "security": ["soc"]})
    no_case = decide(analysis("billing", "low"), rules, NOW)
    assert not no_case.open_case
    assert no_case.tags == ("category:billing", "severity:low", "finance")  # no repeats
    assert decide(analysis("security", "high"), rules, NOW).tags == (
        "category:security",
        "severity:high",
        "soc",
    )


def test_category_only_and_severity_only_rules():
    by_category = RoutingRules(min_severity=None, categories=["legal"])
    assert not decide(analysis("outage", "critical"), by_category, NOW).open_case
    assert decide(analysis("legal", "low"), by_category, NOW).open_case
    by_severity = RoutingRules(min_severity="medium", categories=[])
    assert not decide(analysis("security", "low"), by_severity, NOW).open_case
    assert decide(analysis("billing", "medium"), by_severity, NOW).open_case
    never = RoutingRules(min_severity=None, categories=[])
    assert not any(decide(analysis("security", s), never, NOW).open_case for s in Severity)


def test_reasons_say_why():
    opened = decide(analysis("security", "critical"), DEFAULTS, NOW).reason
    assert "severity critical is at least high" in opened
    assert "category security opens cases" in opened
    assert "due in 1h" in opened
    closed = decide(analysis("billing", "medium"), DEFAULTS, NOW).reason
    assert closed.startswith("No case") and "below high" in closed and "billing" in closed


def test_decisions_are_deterministic_values():
    a = decide(analysis("outage", "high"), DEFAULTS, NOW)
    b = decide(analysis("outage", "high"), RoutingRules(), NOW)
    assert a == b
    assert isinstance(a, RoutingDecision)


def test_from_heuristic_analysis_to_decision():
    request = AnalysisRequest(
        title="Ransomware on the file server",
        chunks=["Our EDR flagged ransomware on fs-02; shares are being encrypted."],
    )
    result = heuristic_analysis(request, taxonomy=DEFAULT_TAXONOMY, rules=DEFAULT_SEVERITY_RULES)
    decision = decide(result, RoutingRules(assignees={"security": "secops"}), NOW)
    assert decision.open_case and decision.severity is Severity.CRITICAL
    assert decision.sla_due_at == NOW + timedelta(hours=1)
    assert decision.assignee == "secops"


# -- Durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (3600, 3600),
        (90.5, 90.5),
        ("45s", 45),
        ("90m", 5400),
        ("4h", 14_400),
        ("1.5h", 5400),
        ("1d12h", 129_600),
        ("2w", 1_209_600),
        (" 1H30M ", 5400),
    ],
)
def test_durations(value, seconds):
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "value", [0, -5, "0s", "", "abc", "5 hours", "h", "1h 30m", True, None, "400d", 10**9]
)
def test_bad_durations(value):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


# -- Parsing ----------------------------------------------------------------------------


def test_parse_full_rules():
    rules = parse_routing_rules(
        json.dumps(
            {
                "min_severity": "critical",
                "categories": ["security", "legal"],
                "sla": {"critical": "30m", "high": 7200},
                "assignees": {"security": " secops "},
                "default_assignee": "triage",
                "tags": {"security": ["soc", "page"]},
            }
        ),
        taxonomy=DEFAULT_TAXONOMY,
    )
    assert rules.min_severity is Severity.CRITICAL
    assert rules.categories == {"security", "legal"}
    assert rules.sla[Severity.CRITICAL] == timedelta(minutes=30)
    assert rules.sla[Severity.HIGH] == timedelta(hours=2)
    assert rules.sla[Severity.MEDIUM] == DEFAULT_SLA[Severity.MEDIUM]  # completed
    assert rules.assignees == {"security": "secops"}
    assert rules.default_assignee == "triage"
    assert rules.tags == {"security": ("soc", "page")}


def test_omitted_keys_keep_their_defaults():
    assert parse_routing_rules("{}") == RoutingRules()
    assert parse_routing_rules('{"min_severity": null}').min_severity is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("[1]", "expected a JSON object, got list"),
        ("{'a': 1}", "not valid JSON"),
        ('{"sla": {}, "sla": {}}', "key 'sla' appears twice"),
        ('{"min_severity": "high", "threshold": 3}', "unknown key 'threshold'"),
        ('{"min_severity": "sev1"}', "min_severity: unknown severity 'sev1'"),
        ('{"categories": "security"}', "categories: expected a list"),
        ('{"categories": ["security", 3]}', "categories: 3 is not a category name"),
        ('{"sla": ["1h"]}', "sla: expected an object"),
        ('{"sla": {"urgent": "1h"}}', "sla: unknown severity 'urgent'"),
        ('{"sla": {"high": "4 hours"}}', "sla: duration '4 hours'"),
        ('{"sla": {"low": 0}}', "sla: duration 0 must be more than 0"),
        ('{"assignees": {"security": ""}}', "assignees: 'security': '' is not a non-empty"),
        ('{"assignees": {"security": 7}}', "assignees: 'security': 7"),
        ('{"default_assignee": ""}', "default_assignee"),
        ('{"tags": {"security": "soc"}}', "tags: 'security': expected a list"),
        ('{"tags": {"security": ["SOC team"]}}', "tag 'SOC team' must be lowercase"),
    ],
)
def test_parse_errors_name_the_problem(text, fragment):
    with pytest.raises(ValueError) as caught:
        parse_routing_rules(text)
    assert str(caught.value).startswith("routing rules: ")
    assert fragment in str(caught.value)


def test_categories_are_checked_against_the_taxonomy_when_given():
    text = '{"categories": ["securty"], "assignees": {"legall": "x"}, "tags": {"billing": []}}'
    with pytest.raises(ValueError, match="not in the taxonomy: legall, securty"):
        parse_routing_rules(text, taxonomy=DEFAULT_TAXONOMY)
    assert parse_routing_rules(text).categories == {"securty"}  # no taxonomy, no check
    # The built-in case categories are not held against a custom taxonomy.
    custom = parse_taxonomy('{"hr": ["harassment"]}')
    rules = parse_routing_rules('{"min_severity": "high"}', taxonomy=custom)
    assert rules.categories == {"security", "legal", "privacy"}
    with pytest.raises(ValueError, match="not in the taxonomy: legal, privacy, security"):
        RoutingRules().check_taxonomy(custom)
