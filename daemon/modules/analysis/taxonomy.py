"""The taxonomy: which categories a document can be filed under, and the keywords
(with weights) that point to each. Pure values, built once from the settings.

Compact text form, one JSON object, for one environment variable. Each category maps to
a list of keywords (weight 1 each) or to an object of keyword -> weight::

    {"billing": ["invoice", "refund*"], "security": {"breach": 3, "phishing": 2}}

Keywords follow :mod:`daemon.modules.analysis.keywords` (case-insensitive, whole words,
trailing ``*`` for a prefix). Declaration order matters: it breaks ties. The category
``other`` always exists (added last, without keywords, when not declared): it is where a
document with no evidence, or an LLM answer outside the taxonomy, ends up.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import TYPE_CHECKING, Any

import attrs

from daemon.modules.analysis.keywords import TermMatcher, normalize_term
from daemon.modules.analysis.schema import CATEGORY_NAME_PATTERN

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Iterable, Mapping

OTHER = "other"
MAX_CATEGORIES = 100
MAX_KEYWORDS_PER_CATEGORY = 500
MAX_WEIGHT = 100.0

_NAME_RE = re.compile(CATEGORY_NAME_PATTERN)
_NAME_RULE = "lowercase letters, digits, '-' or '_', starting with a letter, at most 40"


def check_category_name(name: object) -> str:
    """``name`` if it is a valid category name.

    Raises:
        ValueError: naming the value and the rule.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"category name {name!r} is invalid ({_NAME_RULE})")
    return name


@attrs.frozen(kw_only=True)
class Keyword:
    """A term (normalized on construction) and its weight, a finite number in (0, 100]."""

    term: str = attrs.field(converter=normalize_term)
    weight: float = attrs.field(default=1.0)

    @weight.validator
    def _check_weight(self, _attribute: attrs.Attribute[float], value: float) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 < value <= MAX_WEIGHT
        ):
            raise ValueError(
                f"keyword {self.term!r}: weight must be a number in (0, {MAX_WEIGHT:g}], "
                f"got {value!r}"
            )


@attrs.frozen(kw_only=True)
class Category:
    """A category name and its keywords (distinct terms, at most 500)."""

    name: str = attrs.field(validator=lambda _i, _a, v: check_category_name(v))
    keywords: tuple[Keyword, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        if len(self.keywords) > MAX_KEYWORDS_PER_CATEGORY:
            raise ValueError(
                f"category {self.name!r} has more than {MAX_KEYWORDS_PER_CATEGORY} keywords"
            )
        seen: set[str] = set()
        for keyword in self.keywords:
            if keyword.term in seen:
                raise ValueError(f"category {self.name!r}: keyword {keyword.term!r} is repeated")
            seen.add(keyword.term)


def _with_other(categories: Iterable[Category]) -> tuple[Category, ...]:
    result = tuple(categories)
    if not any(c.name == OTHER for c in result):
        result += (Category(name=OTHER),)
    return result


@attrs.frozen(kw_only=True)
class Taxonomy:
    """Categories in declaration order, always including ``other``.

    Raises ``ValueError`` on construction for no categories besides ``other``, repeated
    names or more than 100 categories.
    """

    categories: tuple[Category, ...] = attrs.field(converter=_with_other)
    _matcher: TermMatcher = attrs.field(init=False, eq=False, repr=False)
    _by_term: dict[str, tuple[tuple[str, float], ...]] = attrs.field(
        init=False, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        names = [c.name for c in self.categories]
        if len(names) < 2:
            raise ValueError("the taxonomy needs at least one category besides 'other'")
        if len(names) > MAX_CATEGORIES:
            raise ValueError(f"the taxonomy has more than {MAX_CATEGORIES} categories")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"category {repeated[0]!r} is declared twice")
        by_term: dict[str, list[tuple[str, float]]] = {}
        for category in self.categories:
            for keyword in category.keywords:
                by_term.setdefault(keyword.term, []).append((category.name, keyword.weight))
        object.__setattr__(self, "_by_term", {t: tuple(v) for t, v in by_term.items()})
        object.__setattr__(self, "_matcher", TermMatcher(by_term))

    @property
    def names(self) -> tuple[str, ...]:
        """Category names in declaration order."""
        return tuple(c.name for c in self.categories)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.categories)

    def coerce_category(self, value: object) -> str:
        """``value`` as a category of this taxonomy (trimmed, lowercased), else ``other``.

        For untrusted answers (an LLM's): anything that is not exactly a known name after
        trimming and lowercasing becomes ``other``, never a new category.
        """
        if isinstance(value, str):
            name = value.strip().lower()
            if name in self:
                return name
        return OTHER

    def count_terms(self, text: str) -> Counter[str]:
        """How often each keyword term of any category occurs in ``text``."""
        return self._matcher.count(text)

    def weights_of(self, term: str) -> tuple[tuple[str, float], ...]:
        """``(category, weight)`` for each category that lists ``term``."""
        return self._by_term.get(term, ())

    def to_mapping(self) -> dict[str, dict[str, float]]:
        """The compact form (keyword -> weight per category); ``parse_taxonomy`` of its
        JSON gives an equal taxonomy."""
        return {c.name: {k.term: k.weight for k in c.keywords} for c in self.categories}

    @property
    def fingerprint(self) -> str:
        """12 hex digits identifying the content; changes when anything changes."""
        return fingerprint(self.to_mapping())

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Taxonomy:
        """A taxonomy from the compact form, already decoded from JSON.

        Raises:
            ValueError: naming the category (and keyword) at fault.
        """
        categories = []
        for name, spec in mapping.items():
            try:
                categories.append(Category(name=name, keywords=_keywords(spec)))
            except ValueError as exc:
                raise ValueError(f"category {name!r}: {exc}") from None
        return cls(categories=categories)


def _keywords(spec: object) -> list[Keyword]:
    if isinstance(spec, list):
        return [Keyword(term=term) for term in spec]
    if isinstance(spec, dict):
        return [Keyword(term=term, weight=weight) for term, weight in spec.items()]
    raise ValueError(
        f"expected a list of keywords or an object of keyword -> weight, got {type(spec).__name__}"
    )


def parse_taxonomy(text: str) -> Taxonomy:
    """A taxonomy from its compact JSON text form (see the module docstring).

    Raises:
        ValueError: the text is not a JSON object, or names what is wrong in it.
    """
    return Taxonomy.from_mapping(load_json_object(text, "taxonomy"))


def load_json_object(text: str, what: str) -> dict[str, Any]:
    """``text`` decoded as a JSON object; repeated keys are an error, not last-wins.

    Raises:
        ValueError: ``"{what}: ..."`` saying why the text is not acceptable.
    """

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"{what}: key {key!r} appears twice")
            result[key] = value
        return result

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{what}: empty; expected a JSON object")
    try:
        value = json.loads(text, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def fingerprint(value: object) -> str:
    """12 hex digits of the SHA-256 of ``value``'s canonical JSON."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


DEFAULT_TAXONOMY = Taxonomy.from_mapping(
    {
        "security": {
            "security incident": 3,
            "data breach": 3,
            "breach": 2,
            "ransomware": 3,
            "malware": 3,
            "phishing": 3,
            "vulnerability": 2,
            "vulnerabilities": 2,
            "exploit*": 2,
            "cve": 2,
            "compromised": 2,
            "unauthorized access": 3,
            "unauthorised access": 3,
            "intrusion": 2,
            "ddos": 3,
            "hacked": 3,
            "backdoor": 3,
            "suspicious login*": 2,
            "credential*": 1,
            "zero-day": 3,
            "leaked": 1,
        },
        "outage": {
            "outage": 3,
            "outages": 3,
            "is down": 2,
            "went down": 2,
            "downtime": 3,
            "unavailable": 2,
            "unreachable": 2,
            "not responding": 2,
            "service disruption": 3,
            "degraded": 2,
            "timeout*": 1,
            "timed out": 1,
            "crash*": 1,
            "bad gateway": 2,
            "status page": 1,
        },
        "billing": {
            "invoice*": 2,
            "refund*": 2,
            "billing": 2,
            "billed": 2,
            "charged": 2,
            "overcharg*": 3,
            "double charged": 3,
            "payment*": 1,
            "credit card": 1,
            "subscription": 1,
            "receipt": 1,
            "pricing": 1,
        },
        "legal": {
            "lawsuit": 3,
            "legal action": 3,
            "attorney": 2,
            "lawyer*": 2,
            "subpoena": 3,
            "court": 1,
            "litigation": 3,
            "cease and desist": 3,
            "breach of contract": 3,
            "liability": 1,
            "terms of service": 1,
        },
        "privacy": {
            "personal data": 2,
            "gdpr": 3,
            "ccpa": 3,
            "data subject": 2,
            "subject access request": 3,
            "right to be forgotten": 3,
            "erasure": 2,
            "delete my data": 3,
            "delete my account": 1,
            "data protection": 2,
            "pii": 2,
            "consent": 1,
        },
        "complaint": {
            "complaint": 3,
            "complain*": 2,
            "dissatisfied": 2,
            "unhappy": 2,
            "disappointed": 2,
            "unacceptable": 2,
            "terrible": 1,
            "worst": 1,
            "rude": 2,
            "frustrat*": 1,
            "poor service": 2,
        },
        "request": {
            "feature request": 3,
            "request": 1,
            "please provide": 2,
            "could you": 1,
            "would like to": 1,
            "how do i": 2,
            "how can i": 2,
            "inquiry": 2,
            "enquiry": 2,
            "question": 1,
        },
        OTHER: [],
    }
)
"""The built-in taxonomy for incident, complaint and security triage."""
