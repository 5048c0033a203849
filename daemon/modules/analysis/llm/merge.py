"""Merging the analyses of a long document's chunks into one. Pure and deterministic.

- severity: the highest of the parts;
- category: by weight, the sum of the parts' confidence per category; ties go to the
  category with more parts, then to the one declared first in the taxonomy;
- entities: all parts' in order, without repeats of (type, normalized or value), at
  most ``MAX_ENTITIES``;
- summary: the one given (a model's summary of the part summaries), else the parts'
  summaries joined in order and cut to ``SUMMARY_MAX_CHARS``;
- confidence: the mean of the parts', to three decimals;
- rationale: how many parts were merged, then the rationale of the most confident part
  of the chosen category, then ``note`` (e.g. that parts were skipped).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from daemon.modules.analysis.entities import dedupe
from daemon.modules.analysis.llm.output import cut
from daemon.modules.analysis.schema import (
    MAX_ENTITIES,
    RATIONALE_MAX_CHARS,
    SUMMARY_MAX_CHARS,
    Analysis,
    Severity,
    parse_analysis,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from daemon.modules.analysis.taxonomy import Taxonomy


def choose_category(parts: Sequence[Analysis], taxonomy: Taxonomy) -> str:
    """The category of the greatest summed confidence (see the module docstring)."""
    weight: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for part in parts:
        weight[part.category] += part.confidence
        count[part.category] += 1
    order = {name: index for index, name in enumerate(taxonomy.names)}
    return min(
        weight,
        key=lambda name: (-round(weight[name], 9), -count[name], order.get(name, len(order))),
    )


def joined_summary(summaries: Sequence[str]) -> str:
    """The summaries in order, joined by spaces and cut to ``SUMMARY_MAX_CHARS``."""
    return cut(" ".join(" ".join(s.split()) for s in summaries if s.strip()), SUMMARY_MAX_CHARS)


def merge_analyses(
    parts: Sequence[Analysis],
    *,
    taxonomy: Taxonomy,
    summary: str | None = None,
    note: str | None = None,
) -> Analysis:
    """One analysis from the chunk analyses ``parts`` (at least one), in document order.

    A single part is returned unchanged apart from ``note`` (appended to its rationale).

    Raises:
        ValueError: ``parts`` is empty.
    """
    if not parts:
        raise ValueError("nothing to merge")
    if len(parts) == 1:
        only = parts[0]
        if note is None:
            return only
        rationale = f"{only.rationale} {note}" if only.rationale else note
        return only.model_copy(update={"rationale": cut(rationale, RATIONALE_MAX_CHARS)})
    category = choose_category(parts, taxonomy)
    deciding = max(
        (p for p in parts if p.category == category), key=lambda p: p.confidence, default=None
    )
    rationale = f"Merged from {len(parts)} parts."
    if deciding is not None and deciding.rationale:
        rationale += f" {deciding.rationale}"
    if note:
        rationale += f" {note}"
    return parse_analysis(
        {
            "category": category,
            "severity": Severity.highest(p.severity for p in parts),
            "summary": summary or joined_summary([p.summary for p in parts]),
            "entities": dedupe(
                (entity for part in parts for entity in part.entities), limit=MAX_ENTITIES
            ),
            "confidence": round(sum(p.confidence for p in parts) / len(parts), 3),
            "rationale": cut(rationale, RATIONALE_MAX_CHARS),
        },
        taxonomy=taxonomy,
    )
