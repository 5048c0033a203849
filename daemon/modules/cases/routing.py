"""Routing rules: from an analysis, decide whether a human gets a case, by when, and who.

Pure: :func:`decide` reads only its arguments (the caller passes ``now``), so the
``routed`` step is deterministic and a redelivered job decides the same again.

A case is opened when the analysis' severity is at least ``min_severity`` *or* its
category is one of ``categories``. A case's SLA due time is ``now`` plus the duration for
its severity; its assignee is the one configured for its category, else
``default_assignee``, else nobody. Tags (``category:<name>``, ``severity:<level>``, then
the category's configured tags) are given whether or not a case opens: they label the
document too.

Compact text form, one JSON object; a key omitted keeps its default, durations are
seconds or ``"90m"``, ``"4h"``, ``"1d12h"``, ``"2w"``::

    {"min_severity": "high", "categories": ["security", "legal"],
     "sla": {"critical": "1h", "high": "4h"}, "assignees": {"security": "secops"},
     "default_assignee": null, "tags": {"security": ["soc"]}}

``"min_severity": null`` opens cases by category only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs

from daemon.modules.analysis import Severity

if TYPE_CHECKING:
    from datetime import datetime

    from daemon.modules.analysis import Analysis, Taxonomy

DEFAULT_SLA: Mapping[Severity, timedelta] = {
    Severity.CRITICAL: timedelta(hours=1),
    Severity.HIGH: timedelta(hours=4),
    Severity.MEDIUM: timedelta(hours=24),
    Severity.LOW: timedelta(hours=72),
}
DEFAULT_CASE_CATEGORIES = frozenset({"security", "legal", "privacy"})
MAX_SLA = timedelta(days=365)
MAX_ASSIGNEE_CHARS = 200

_KEYS = ("min_severity", "categories", "sla", "assignees", "default_assignee", "tags")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[wdhms])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_TAG = re.compile(r"[a-z0-9][a-z0-9:_./-]{0,63}")


def parse_duration(value: object) -> timedelta:
    """A positive duration of at most a year: seconds (a number) or a string of
    number-unit parts, units ``w d h m s`` (``"1h30m"``).

    Raises:
        ValueError: naming the value.
    """
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip().lower()):
        parts = _DURATION_PART.findall(value.strip().lower())
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds is None or not math.isfinite(seconds):
        raise ValueError(f"duration {value!r} is not seconds or like '90m', '4h', '1d12h'")
    if not 0 < seconds <= MAX_SLA.total_seconds():
        raise ValueError(f"duration {value!r} must be more than 0 and at most 365 days")
    return timedelta(seconds=seconds)


def _sla(value: Mapping[object, object]) -> dict[Severity, timedelta]:
    if not isinstance(value, Mapping):
        raise ValueError(f"sla: expected an object, got {type(value).__name__}")
    result = dict(DEFAULT_SLA)
    for severity, duration in value.items():
        try:
            result[Severity.parse(severity)] = (
                duration if isinstance(duration, timedelta) else parse_duration(duration)
            )
        except ValueError as exc:
            raise ValueError(f"sla: {exc}") from None
    for severity, duration in result.items():
        if not timedelta(0) < duration <= MAX_SLA:
            raise ValueError(f"sla: {severity}: must be more than 0 and at most 365 days")
    return {s: result[s] for s in Severity}


def _names(value: Iterable[object]) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError("categories: expected a list of category names")
    names: set[str] = set()
    for name in value:
        if not isinstance(name, str) or not name:
            raise ValueError(f"categories: {name!r} is not a category name")
        names.add(name)
    return frozenset(names)


def _assignee(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what}: {value!r} is not a non-empty string")
    if len(value.strip()) > MAX_ASSIGNEE_CHARS:
        raise ValueError(f"{what}: longer than {MAX_ASSIGNEE_CHARS} characters")
    return value.strip()


def _default_assignee(value: object) -> str | None:
    return None if value is None else _assignee(value, "default_assignee")


def _assignees(value: Mapping[str, object]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError(f"assignees: expected an object, got {type(value).__name__}")
    return {c: _assignee(who, f"assignees: {c!r}") for c, who in value.items()}


def _tags(value: Mapping[str, object]) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise ValueError(f"tags: expected an object, got {type(value).__name__}")
    result: dict[str, tuple[str, ...]] = {}
    for category, tags in value.items():
        if isinstance(tags, str) or not isinstance(tags, Iterable):
            raise ValueError(f"tags: {category!r}: expected a list of tags")
        for tag in tags:
            if not isinstance(tag, str) or not _TAG.fullmatch(tag):
                raise ValueError(
                    f"tags: {category!r}: tag {tag!r} must be lowercase letters, digits or "
                    "': _ . / -', at most 64"
                )
        result[category] = tuple(dict.fromkeys(tags))
    return result


def _min_severity(value: object) -> Severity | None:
    try:
        return None if value is None else Severity.parse(value)
    except ValueError as exc:
        raise ValueError(f"min_severity: {exc}") from None


@attrs.frozen(kw_only=True)
class RoutingRules:
    """When to open a case, with which SLA, for whom, with which tags (module docstring).

    ``sla`` given in part is completed from :data:`DEFAULT_SLA`. Raises ``ValueError`` on
    construction for an invalid value, naming it.
    """

    min_severity: Severity | None = attrs.field(default=Severity.HIGH, converter=_min_severity)
    categories: frozenset[str] = attrs.field(default=DEFAULT_CASE_CATEGORIES, converter=_names)
    sla: Mapping[Severity, timedelta] = attrs.field(factory=dict, converter=_sla)
    assignees: Mapping[str, str] = attrs.field(factory=dict, converter=_assignees)
    default_assignee: str | None = attrs.field(default=None, converter=_default_assignee)
    tags: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, converter=_tags)

    def mentioned_categories(self) -> frozenset[str]:
        """Every category name these rules mention."""
        return self.categories | set(self.assignees) | set(self.tags)

    def check_taxonomy(self, taxonomy: Taxonomy) -> None:
        """Raises ``ValueError`` naming any mentioned category ``taxonomy`` lacks (a typo
        would otherwise silently never match)."""
        unknown = sorted(c for c in self.mentioned_categories() if c not in taxonomy)
        if unknown:
            raise ValueError(
                f"routing rules name categories not in the taxonomy: {', '.join(unknown)}"
            )


@attrs.frozen(kw_only=True)
class RoutingDecision:
    """What the ``routed`` step does with one analysed document.

    ``sla_due_at`` and ``assignee`` are ``None`` when no case opens. ``reason`` says in
    words why (for the document's history and the case).
    """

    open_case: bool
    severity: Severity
    sla_due_at: datetime | None
    assignee: str | None
    tags: tuple[str, ...]
    reason: str
    category: str | None = None


def decide(analysis: Analysis, rules: RoutingRules, now: datetime) -> RoutingDecision:
    """The routing decision for ``analysis`` at ``now`` (see the module docstring).

    Raises:
        ValueError: ``now`` has no time zone (a due time must be unambiguous).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    severity, category = analysis.severity, analysis.category
    by_severity = rules.min_severity is not None and severity.at_least(rules.min_severity)
    by_category = category in rules.categories
    tags = tuple(
        dict.fromkeys(
            (f"category:{category}", f"severity:{severity}", *rules.tags.get(category, ()))
        )
    )
    if not (by_severity or by_category):
        if rules.min_severity is None:
            threshold = "no severity threshold"
        else:
            threshold = f"severity {severity} is below {rules.min_severity}"
        return RoutingDecision(
            open_case=False,
            severity=severity,
            sla_due_at=None,
            assignee=None,
            tags=tags,
            reason=f"No case: {threshold} and category {category} does not open cases.",
            category=category,
        )
    why: list[str] = []
    if by_severity:
        why.append(f"severity {severity} is at least {rules.min_severity}")
    if by_category:
        why.append(f"category {category} opens cases")
    due = rules.sla[severity]
    return RoutingDecision(
        open_case=True,
        severity=severity,
        sla_due_at=now + due,
        assignee=rules.assignees.get(category, rules.default_assignee),
        tags=tags,
        reason=f"Case opened: {' and '.join(why)}; due in {_human(due)}.",
        category=category,
    )


def _human(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_routing_rules(text: str, *, taxonomy: Taxonomy | None = None) -> RoutingRules:
    """Routing rules from their compact JSON text form (see the module docstring); with
    ``taxonomy``, the categories the text names are checked against it.

    Raises:
        ValueError: ``"routing rules: ..."`` naming what is wrong.
    """
    data = _json_object(text)
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ValueError(
            f"routing rules: unknown key {unknown[0]!r} (expected: {', '.join(_KEYS)})"
        )
    try:
        rules = RoutingRules(**data)
        if taxonomy is not None:
            given = RoutingRules(
                categories=data.get("categories", ()),
                assignees=data.get("assignees", {}),
                tags=data.get("tags", {}),
            )
            given.check_taxonomy(taxonomy)
    except ValueError as exc:
        raise ValueError(f"routing rules: {exc}") from None
    return rules


def _json_object(text: str) -> dict[str, Any]:
    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        for key in keys:
            if keys.count(key) > 1:
                raise ValueError(f"routing rules: key {key!r} appears twice")
        return dict(pairs)

    if not isinstance(text, str) or not text.strip():
        raise ValueError("routing rules: empty; expected a JSON object")
    try:
        value = json.loads(text, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as exc:
        raise ValueError(f"routing rules: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"routing rules: expected a JSON object, got {type(value).__name__}")
    return value
