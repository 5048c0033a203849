"""From a model's answer to a validated :class:`Analysis`: liberal in what is accepted,
strict in what is validated.

Three steps, each pure:

1. :func:`extract_json` finds the JSON object in the answer: the whole text, else
   inside a Markdown code fence, else the first balanced ``{...}`` block in prose
   (llama.cpp and small models like to wrap their JSON). Candidates that look like an
   analysis (they have one of its field names) win over other objects.
2. :func:`normalize` tidies what models commonly get slightly wrong, where the intent is
   unambiguous: a category outside the taxonomy becomes ``other`` (never a new
   category); severity names are trimmed and lowercased; entity types are lowercased,
   common synonyms mapped and unknown ones become ``other``; entities without a usable
   value are dropped and those beyond :data:`MAX_ENTITIES` cut; an overlong summary or
   rationale is cut with an ellipsis; fields the schema does not know are dropped (so a
   document cannot smuggle one in); ``{"analysis": {...}}`` is unwrapped. Anything else
   (a missing summary, a severity outside the scale, a confidence of 7) is left for
   validation to refuse.
3. :func:`parse_output` validates with :func:`parse_analysis` against the taxonomy and
   raises :class:`OutputInvalid` with one readable line per problem, the material of a
   repair round.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pydantic

from daemon.modules.analysis.schema import (
    ENTITY_VALUE_MAX_CHARS,
    MAX_ENTITIES,
    RATIONALE_MAX_CHARS,
    SUMMARY_MAX_CHARS,
    Analysis,
    EntityType,
    parse_analysis,
)
from daemon.modules.analysis.summary import ELLIPSIS

if TYPE_CHECKING:
    from daemon.modules.analysis.taxonomy import Taxonomy

MAX_BRACE_CANDIDATES = 200  # "{" positions tried in prose; bounds the work on junk
MAX_ERRORS = 20  # problems listed in a repair request

_FIELDS = frozenset(Analysis.model_fields)
_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript)?[ \t]*\r?\n?(.*?)```", re.DOTALL)
_SEPARATORS = re.compile(r"[\s_-]+")
_ENTITY_TYPES = frozenset(t.value for t in EntityType)
_ENTITY_SYNONYMS = {
    "e_mail": "email",
    "email_address": "email",
    "mail": "email",
    "link": "url",
    "uri": "url",
    "website": "url",
    "datetime": "date",
    "time": "date",
    "money": "amount",
    "price": "amount",
    "currency": "amount",
    "id": "identifier",
    "ticket": "identifier",
    "invoice": "identifier",
    "reference": "identifier",
    "ip": "ip_address",
    "ipv4": "ip_address",
    "ipv6": "ip_address",
    "vulnerability": "cve",
    "name": "person",
    "people": "person",
    "org": "organization",
    "organisation": "organization",
    "company": "organization",
}


class OutputInvalid(Exception):  # a signal inside the package, never raised out
    """The model's answer is not a valid analysis; ``errors`` says why, one line each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


def extract_json(text: str) -> dict[str, Any] | None:
    """The JSON object in ``text`` (see the module docstring), or ``None``."""
    stripped = text.strip().lstrip("\ufeff")
    if not stripped:
        return None
    whole = _loads_object(stripped)
    if whole is not None:
        return whole
    candidates: list[dict[str, Any]] = []
    for match in _FENCE.finditer(stripped):
        fenced = _loads_object(match.group(1).strip())
        if fenced is not None:
            candidates.append(fenced)
    candidates += _brace_objects(stripped)
    for candidate in candidates:
        if _FIELDS.intersection(candidate):
            return candidate
    return candidates[0] if candidates else None


def _loads_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _brace_objects(text: str) -> list[dict[str, Any]]:
    """Objects decoded at successive ``{``: the first balanced block that parses, then
    later ones (after its end), at most ``MAX_BRACE_CANDIDATES`` attempts."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    position = text.find("{")
    attempts = 0
    while position != -1 and attempts < MAX_BRACE_CANDIDATES:
        attempts += 1
        try:
            value, end = decoder.raw_decode(text, position)
        except ValueError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        position = text.find("{", end)
    return found


def normalize(data: dict[str, Any], taxonomy: Taxonomy) -> dict[str, Any]:
    """A tidied copy of ``data`` (see the module docstring, step 2). Never raises."""
    inner = data.get("analysis")
    if not _FIELDS.intersection(data) and isinstance(inner, dict):
        data = inner
    result = {key: value for key, value in data.items() if key in _FIELDS}
    if "category" in result:
        result["category"] = taxonomy.coerce_category(result["category"])
    severity = result.get("severity")
    if isinstance(severity, str):
        result["severity"] = severity.strip().lower()
    entities = result.get("entities")
    if entities is None and "entities" in result:
        result["entities"] = []
    elif isinstance(entities, list):
        result["entities"] = _entities(entities)
    for field, limit in (("summary", SUMMARY_MAX_CHARS), ("rationale", RATIONALE_MAX_CHARS)):
        value = result.get(field)
        if isinstance(value, str):
            result[field] = cut(value.strip(), limit)
    return result


def _entities(items: list[Any]) -> list[dict[str, Any]]:
    kept: list[dict[str, Any]] = []
    for item in items:
        if len(kept) >= MAX_ENTITIES:
            break
        if not isinstance(item, dict):
            continue
        value = item.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            continue
        normalized = item.get("normalized")
        if not isinstance(normalized, str) or not normalized.strip():
            normalized = None
        kept.append(
            {
                "type": _entity_type(item.get("type")),
                "value": value.strip()[:ENTITY_VALUE_MAX_CHARS],
                "normalized": normalized and normalized.strip()[:ENTITY_VALUE_MAX_CHARS],
            }
        )
    return kept


def _entity_type(value: object) -> str:
    if not isinstance(value, str):
        return EntityType.OTHER.value
    name = _SEPARATORS.sub("_", value.strip().lower())
    if name in _ENTITY_TYPES:
        return name
    return _ENTITY_SYNONYMS.get(name, EntityType.OTHER.value)


def cut(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else cut at a word with ``…``."""
    if len(text) <= limit:
        return text
    head = text[: limit - len(ELLIPSIS)]
    if " " in head[limit // 2 :]:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip(" ,;:-") + ELLIPSIS


def parse_output(text: str, taxonomy: Taxonomy, *, cut_off: bool = False) -> Analysis:
    """The analysis in the model's answer ``text``, validated against ``taxonomy``.

    ``cut_off`` says the server stopped the answer at the token limit (``finish_reason``
    ``length``); it is mentioned among the errors, as the likely cause.

    Raises:
        OutputInvalid: no JSON object found, or the problems with the one found.
    """
    data = extract_json(text)
    if data is None:
        errors = ["the answer contains no JSON object"]
        if not text.strip():
            errors = ["the answer is empty"]
    else:
        try:
            return parse_analysis(normalize(data, taxonomy), taxonomy=taxonomy)
        except pydantic.ValidationError as exc:
            errors = describe_errors(exc)
    if cut_off:
        errors.append("the answer was cut off at the token limit: keep it shorter")
    raise OutputInvalid(errors)


def describe_errors(exc: pydantic.ValidationError) -> list[str]:
    """One line per problem: the field path and what is wrong, never the value."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False)[:MAX_ERRORS]:
        location = ".".join(str(part) for part in error["loc"]) or "(the object)"
        kind = error["type"]
        if kind == "missing":
            lines.append(f"{location}: the field is required")
        elif kind == "extra_forbidden":
            lines.append(f"{location}: this field is not allowed")
        else:
            lines.append(f"{location}: {error['msg']}")
    return lines


def parse_summary(text: str) -> str | None:
    """The summary in the answer of a summary call (``{"summary": "..."}``, or plain
    prose when there is no JSON), cut to ``SUMMARY_MAX_CHARS``; ``None`` if empty."""
    data = extract_json(text)
    if data is not None:
        value = data.get("summary")
        summary = " ".join(value.split()) if isinstance(value, str) else ""
    elif "{" in text or "```" in text:
        summary = ""
    else:
        summary = " ".join(text.split())
    return cut(summary, SUMMARY_MAX_CHARS) if summary else None
