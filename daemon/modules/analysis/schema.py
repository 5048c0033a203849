"""The analysis result: what every analyzer provider must return, as pydantic models.

One schema for every provider. The heuristic provider builds it directly; the LLM
provider validates the model's JSON output against the same models, so a malformed,
out-of-range or out-of-taxonomy answer is a ``pydantic.ValidationError`` (whose errors can
be fed back to the model in a repair round) and never an ``Analysis``.

The category is checked against a taxonomy only when one is passed in the validation
context (:func:`parse_analysis` and :func:`parse_analysis_json` always pass it); without
a context only its shape (a lowercase name) is checked. Mapping an unknown category to
``other`` is deliberately *not* done here: the caller decides, with
:meth:`Taxonomy.coerce_category <daemon.modules.analysis.taxonomy.Taxonomy.coerce_category>`,
before validation.

:func:`analysis_json_schema` exports the schema for constrained decoding (OpenAI-style
``response_format`` with ``json_schema``).
"""

from __future__ import annotations

import copy
import re
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

if TYPE_CHECKING:
    from collections.abc import Iterable

    from daemon.modules.analysis.taxonomy import Taxonomy

SUMMARY_MAX_CHARS = 500
RATIONALE_MAX_CHARS = 1000
ENTITY_VALUE_MAX_CHARS = 500
MAX_ENTITIES = 50
CATEGORY_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,39}$"
TAXONOMY_CONTEXT_KEY = "taxonomy"  # validation context key holding a Taxonomy
SCHEMA_NAME = "triage_analysis"

_CATEGORY_NAME_RE = re.compile(CATEGORY_NAME_PATTERN)


class Severity(StrEnum):
    """How urgent a document is; values equal the ``severity`` enum in the database.

    Ordered low < medium < high < critical. Comparisons (``<``, ``max``, ``sorted``) follow
    that order, not the alphabetical order a plain ``StrEnum`` would use; a plain string
    on either side is converted first (``Severity.HIGH >= "medium"``) and an unknown one
    raises ``ValueError``.
    """

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """1 (low) to 4 (critical)."""
        return _RANK[self]

    def at_least(self, minimum: Severity) -> bool:
        """Whether this severity is ``minimum`` or above."""
        return self.rank >= minimum.rank

    @classmethod
    def highest(cls, severities: Iterable[Severity], default: Severity | None = None) -> Severity:
        """The highest of ``severities``; ``default`` (low unless given) when empty."""
        return max(severities, key=_rank_of, default=default or cls.LOW)

    @classmethod
    def parse(cls, value: object) -> Severity:
        """A severity from its name, any case and surrounding spaces.

        Raises:
            ValueError: naming the value and the allowed names.
        """
        if isinstance(value, Severity):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        allowed = ", ".join(s.value for s in cls)
        raise ValueError(f"unknown severity {value!r} (expected one of: {allowed})")

    def __lt__(self, other: object) -> bool:
        return self.rank < _coerce_rank(other)

    def __le__(self, other: object) -> bool:
        return self.rank <= _coerce_rank(other)

    def __gt__(self, other: object) -> bool:
        return self.rank > _coerce_rank(other)

    def __ge__(self, other: object) -> bool:
        return self.rank >= _coerce_rank(other)


_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


def _rank_of(severity: Severity) -> int:
    return severity.rank


def _coerce_rank(other: object) -> int:
    if isinstance(other, str):
        return Severity.parse(other).rank
    raise TypeError(f"cannot compare a severity with {type(other).__name__}")


class EntityType(StrEnum):
    """Kinds of entities. The heuristic provider extracts the first seven; the rest are
    for model providers."""

    EMAIL = "email"
    URL = "url"
    DATE = "date"
    AMOUNT = "amount"
    IDENTIFIER = "identifier"  # ticket, case, invoice, order, incident numbers
    CVE = "cve"
    IP_ADDRESS = "ip_address"
    PERSON = "person"
    ORGANIZATION = "organization"
    OTHER = "other"


_Text = Annotated[str, Field(min_length=1, max_length=ENTITY_VALUE_MAX_CHARS)]


class Entity(BaseModel):
    """One thing named in the document: ``value`` as written, ``normalized`` when a
    canonical form is known (ISO date, ``USD 1234.50``, lowercased email, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    type: EntityType
    value: _Text
    normalized: _Text | None = None


class Analysis(BaseModel):
    """The validated analysis of one document (all chunks merged).

    ``confidence`` is the provider's own estimate in [0, 1]; ``rationale`` says why, in a
    sentence or two, for the human reading the case.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    category: str = Field(pattern=CATEGORY_NAME_PATTERN)
    severity: Severity
    summary: str = Field(min_length=1, max_length=SUMMARY_MAX_CHARS)
    entities: tuple[Entity, ...] = Field(default=(), max_length=MAX_ENTITIES)
    confidence: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    rationale: str | None = Field(default=None, max_length=RATIONALE_MAX_CHARS)

    @field_validator("category")
    @classmethod
    def _category_in_taxonomy(cls, value: str, info: ValidationInfo) -> str:
        context = info.context if isinstance(info.context, dict) else {}
        taxonomy: Taxonomy | None = context.get(TAXONOMY_CONTEXT_KEY)
        if taxonomy is not None and value not in taxonomy:
            allowed = ", ".join(taxonomy.names)
            raise ValueError(f"category {value!r} is not in the taxonomy ({allowed})")
        return value


def parse_analysis(data: object, *, taxonomy: Taxonomy) -> Analysis:
    """Validate a decoded JSON value (usually a dict) as an analysis in ``taxonomy``.

    Raises:
        pydantic.ValidationError: listing every invalid field.
    """
    return Analysis.model_validate(data, context={TAXONOMY_CONTEXT_KEY: taxonomy})


def parse_analysis_json(text: str | bytes, *, taxonomy: Taxonomy) -> Analysis:
    """Validate JSON text as an analysis in ``taxonomy``.

    Raises:
        pydantic.ValidationError: the text is not JSON, or lists every invalid field.
    """
    return Analysis.model_validate_json(text, context={TAXONOMY_CONTEXT_KEY: taxonomy})


def analysis_json_schema(taxonomy: Taxonomy) -> dict[str, Any]:
    """The JSON schema of :class:`Analysis` for constrained decoding, self-contained.

    Shaped for "strict" structured output: no ``$ref`` (definitions inlined), every
    property listed in ``required`` (optional ones are nullable instead), no defaults,
    ``additionalProperties: false`` everywhere, and ``category`` an ``enum`` of the
    taxonomy's names. Length and range limits are kept as hints for the decoder; the
    output is validated with :func:`parse_analysis` either way. A new dict on each call.
    """
    schema = Analysis.model_json_schema(mode="validation")
    defs = schema.pop("$defs", {})
    schema = _strictify(_inline(schema, defs))
    properties = schema["properties"]
    properties["category"].pop("pattern", None)
    properties["category"]["enum"] = list(taxonomy.names)
    for field, hint in _HINTS.items():
        properties[field]["description"] = hint
    return schema


def response_format(taxonomy: Taxonomy, *, name: str = SCHEMA_NAME) -> dict[str, Any]:
    """The ``response_format`` value of an OpenAI-compatible chat-completions request."""
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "strict": True, "schema": analysis_json_schema(taxonomy)},
    }


_DROPPED = frozenset({"default", "title", "description"})
_HINTS = {
    "category": "The one category of the taxonomy that fits the document best.",
    "severity": "How urgently a human must act: low, medium, high or critical.",
    "summary": "What the document reports or asks, in one to three plain sentences.",
    "entities": "Things named in the document, each with its type and the text as written.",
    "confidence": "How sure you are of category and severity, from 0 to 1.",
    "rationale": "One or two sentences on why this category and severity.",
}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            resolved = copy.deepcopy(defs[ref.removeprefix("#/$defs/")])
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            return _inline({**resolved, **siblings}, defs)
        return {key: _inline(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    return node


def _strictify(node: Any) -> Any:
    if isinstance(node, list):
        return [_strictify(item) for item in node]
    if not isinstance(node, dict):
        return node
    # Docstrings and titles are for developers, not for the model: dropped.
    out = {key: _strictify(value) for key, value in node.items() if key not in _DROPPED}
    if isinstance(node.get("properties"), dict):  # field names, not keywords: keep all
        out["properties"] = {name: _strictify(sub) for name, sub in node["properties"].items()}
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out
