"""Severity rules of the heuristic provider: keyword -> minimum severity, plus a default
severity per category. Pure values, built once from the settings.

The severity of a document is the highest of: the rule default, its category's default,
and the severity of every keyword found in it. Keywords follow
:mod:`daemon.modules.analysis.keywords`. Rules see words, not meaning: "no outage
today" still matches ``outage``; the LLM provider is the answer to that.

Compact text form, one JSON object. A key given replaces that part of the built-in
rules entirely; a key omitted keeps the built-in part (``to_mapping()`` of
:data:`DEFAULT_SEVERITY_RULES` shows it). ``{"keywords": {}}`` turns keyword rules off::

    {"keywords": {"ransomware": "critical", "outage*": "high"},
     "categories": {"security": "medium"},
     "default": "low"}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from daemon.modules.analysis.keywords import TermMatcher, normalize_term
from daemon.modules.analysis.schema import Severity
from daemon.modules.analysis.taxonomy import (
    check_category_name,
    fingerprint,
    load_json_object,
)

if TYPE_CHECKING:
    from daemon.modules.analysis.taxonomy import Taxonomy

_KEYS = frozenset({"keywords", "categories", "default"})


def _keyword_severities(value: Mapping[str, object]) -> dict[str, Severity]:
    result: dict[str, Severity] = {}
    for raw, severity in _as_mapping(value, "keywords").items():
        try:
            term = normalize_term(raw)
            parsed = Severity.parse(severity)
        except ValueError as exc:
            raise ValueError(f"keywords: {raw!r}: {exc}") from None
        if term in result:
            raise ValueError(f"keywords: {term!r} is given twice")
        result[term] = parsed
    return result


def _category_severities(value: Mapping[str, object]) -> dict[str, Severity]:
    result: dict[str, Severity] = {}
    for name, severity in _as_mapping(value, "categories").items():
        try:
            result[check_category_name(name)] = Severity.parse(severity)
        except ValueError as exc:
            raise ValueError(f"categories: {exc}") from None
    return result


def _as_mapping(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what}: expected an object, got {type(value).__name__}")
    return value


@attrs.frozen(kw_only=True)
class SeverityRules:
    """Keyword and category severities (see the module docstring).

    Raises ``ValueError`` on construction for an invalid keyword, category name or
    severity, naming it.
    """

    keywords: Mapping[str, Severity] = attrs.field(factory=dict, converter=_keyword_severities)
    categories: Mapping[str, Severity] = attrs.field(factory=dict, converter=_category_severities)
    default: Severity = attrs.field(default=Severity.LOW, converter=Severity.parse)
    _matcher: TermMatcher = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_matcher", TermMatcher(self.keywords))

    def matched(self, text: str) -> dict[str, Severity]:
        """The keywords found in ``text`` and their severities, in term order."""
        return {term: self.keywords[term] for term in sorted(self._matcher.count(text))}

    def for_category(self, category: str) -> Severity:
        """The floor for a document of ``category``: its default, else the rule default."""
        return Severity.highest([self.categories.get(category, self.default), self.default])

    def check_taxonomy(self, taxonomy: Taxonomy) -> None:
        """Raises ``ValueError`` naming any category these rules mention that
        ``taxonomy`` lacks (a typo would otherwise silently never apply)."""
        unknown = [name for name in self.categories if name not in taxonomy]
        if unknown:
            raise ValueError(
                f"severity rules name categories not in the taxonomy: {', '.join(unknown)}"
            )

    def to_mapping(self) -> dict[str, Any]:
        """The compact form; ``parse_severity_rules`` of its JSON gives equal rules."""
        return {
            "keywords": {term: s.value for term, s in self.keywords.items()},
            "categories": {name: s.value for name, s in self.categories.items()},
            "default": self.default.value,
        }

    @property
    def fingerprint(self) -> str:
        """12 hex digits identifying the content; changes when anything changes."""
        return fingerprint(self.to_mapping())


def parse_severity_rules(text: str, *, taxonomy: Taxonomy | None = None) -> SeverityRules:
    """Severity rules from their compact JSON text form (see the module docstring).

    With ``taxonomy``, the categories the text names are checked against it (the
    built-in ones are not: they are inert for categories a custom taxonomy lacks).

    Raises:
        ValueError: ``"severity rules: ..."`` naming what is wrong.
    """
    data = load_json_object(text, "severity rules")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ValueError(
            f"severity rules: unknown key {unknown[0]!r} (expected: {', '.join(sorted(_KEYS))})"
        )
    base = DEFAULT_SEVERITY_RULES
    try:
        rules = SeverityRules(
            keywords=data.get("keywords", base.keywords),
            categories=data.get("categories", base.categories),
            default=data.get("default", base.default),
        )
        if taxonomy is not None and "categories" in data:
            rules.check_taxonomy(taxonomy)
    except ValueError as exc:
        raise ValueError(f"severity rules: {exc}") from None
    return rules


DEFAULT_SEVERITY_RULES = SeverityRules(
    keywords={
        # critical: active, large-scale harm
        "ransomware": "critical",
        "data breach": "critical",
        "actively exploited": "critical",
        "zero-day": "critical",
        "complete outage": "critical",
        "total outage": "critical",
        "production down": "critical",
        # high: an incident or a legal threat
        "breach": "high",
        "security incident": "high",
        "unauthorized access": "high",
        "unauthorised access": "high",
        "compromised": "high",
        "malware": "high",
        "hacked": "high",
        "data leak": "high",
        "outage": "high",
        "outages": "high",
        "is down": "high",
        "went down": "high",
        "downtime": "high",
        "lawsuit": "high",
        "legal action": "high",
        "litigation": "high",
        "subpoena": "high",
        "cease and desist": "high",
        "urgent": "high",
        "emergency": "high",
        # medium: something is wrong for someone
        "vulnerability": "medium",
        "vulnerabilities": "medium",
        "phishing": "medium",
        "degraded": "medium",
        "not working": "medium",
        "overcharg*": "medium",
        "double charged": "medium",
        "complaint": "medium",
        "unacceptable": "medium",
        "gdpr": "medium",
        "subject access request": "medium",
        "right to be forgotten": "medium",
        "deadline": "medium",
    },
    categories={
        "security": "medium",
        "outage": "medium",
        "legal": "medium",
        "privacy": "medium",
    },
)
"""The built-in severity rules, matching :data:`DEFAULT_TAXONOMY`."""
