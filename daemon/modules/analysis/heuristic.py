"""The built-in ``heuristic`` provider: deterministic keyword and rule analysis, no model.

How one document is analysed (:func:`heuristic_analysis`, pure):

1. Each piece of text (the title, then every chunk) yields its own evidence: keyword hits
   per category, severity keywords, entities. A keyword counts at most
   ``MAX_HITS_PER_KEYWORD`` times per piece (repetition is weak evidence); a title hit
   counts ``TITLE_FACTOR`` times a body hit.
2. The evidence is merged: category weights add up; severity keywords are pooled;
   entities are kept in order of appearance without repeats.
3. Category: the highest total weight; ties go to more distinct keywords, then to the
   category declared first. No keyword at all: ``other``.
4. Severity: the highest of the category's default and every matched severity keyword.
5. Summary: the leading sentences of the first chunk (else of the title).
6. Confidence: grows with the winner's weight and its margin over the runner-up, within
   [0.1, 0.95]; 0.1 without evidence. Rationale: the keywords that decided.

Same request, same taxonomy and rules -> the same analysis, always.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections import Counter
from typing import TYPE_CHECKING

import attrs
import trio

from daemon.modules.analysis.entities import dedupe, extract_entities
from daemon.modules.analysis.provider import AnalysisOutcome
from daemon.modules.analysis.schema import (
    MAX_ENTITIES,
    RATIONALE_MAX_CHARS,
    Severity,
    parse_analysis,
)
from daemon.modules.analysis.severity_rules import DEFAULT_SEVERITY_RULES, SeverityRules
from daemon.modules.analysis.summary import ELLIPSIS, summarize
from daemon.modules.analysis.taxonomy import DEFAULT_TAXONOMY, OTHER, Taxonomy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from daemon.modules.analysis.provider import AnalysisRequest
    from daemon.modules.analysis.schema import Analysis

PROVIDER_NAME = "heuristic"
MODEL_NAME = "keyword-rules"
RULES_VERSION = "1"  # bump when the algorithm (not the configuration) changes
MAX_HITS_PER_KEYWORD = 3
TITLE_FACTOR = 2.0
INLINE_MAX_CHARS = 4_096  # larger requests are analysed in a worker thread (~0.5 µs/char)
NO_EVIDENCE_CONFIDENCE = 0.1
MAX_CONFIDENCE = 0.95
RATIONALE_TERMS = 6
EMPTY_SUMMARY = "The document has no text."


@attrs.frozen(kw_only=True)
class Evidence:
    """What one piece of text says: weight and hits (term -> count) per category, and
    the severity keywords found."""

    weights: dict[str, float] = attrs.field(factory=dict)
    hits: dict[str, Counter[str]] = attrs.field(factory=dict)
    severities: dict[str, Severity] = attrs.field(factory=dict)


def gather_evidence(
    text: str, *, taxonomy: Taxonomy, rules: SeverityRules, factor: float = 1.0
) -> Evidence:
    """The evidence of one piece of text; keyword weights multiplied by ``factor``."""
    weights: dict[str, float] = {}
    hits: dict[str, Counter[str]] = {}
    for term, count in sorted(taxonomy.count_terms(text).items()):
        for category, weight in taxonomy.weights_of(term):
            weights[category] = weights.get(category, 0.0) + (
                weight * min(count, MAX_HITS_PER_KEYWORD) * factor
            )
            hits.setdefault(category, Counter())[term] += count
    return Evidence(weights=weights, hits=hits, severities=rules.matched(text))


def merge_evidence(pieces: list[Evidence]) -> Evidence:
    """The sum of ``pieces``: weights and hit counts added, severity keywords pooled."""
    weights: dict[str, float] = {}
    hits: dict[str, Counter[str]] = {}
    severities: dict[str, Severity] = {}
    for piece in pieces:
        for category, weight in piece.weights.items():
            weights[category] = weights.get(category, 0.0) + weight
        for category, counter in piece.hits.items():
            hits.setdefault(category, Counter()).update(counter)
        severities.update(piece.severities)
    return Evidence(weights=weights, hits=hits, severities=severities)


def choose_category(evidence: Evidence, taxonomy: Taxonomy) -> str:
    """The winning category (see the module docstring, step 3)."""
    order = {name: index for index, name in enumerate(taxonomy.names)}
    candidates = [name for name, weight in evidence.weights.items() if weight > 0]
    if not candidates:
        return OTHER
    return min(
        candidates,
        key=lambda name: (-evidence.weights[name], -len(evidence.hits[name]), order[name]),
    )


def confidence_of(evidence: Evidence, category: str) -> float:
    """A number in [0.1, 0.95]: evidence strength times the margin over the runner-up."""
    top = evidence.weights.get(category, 0.0)
    if top <= 0:
        return NO_EVIDENCE_CONFIDENCE
    runner_up = max((w for name, w in evidence.weights.items() if name != category), default=0)
    strength = 1 - 0.5 ** (top / 3)  # 3 (one strong keyword): 0.5; 9: 0.875
    margin = (top - runner_up) / top
    value = NO_EVIDENCE_CONFIDENCE + 0.1 + 0.75 * strength * margin
    return round(min(MAX_CONFIDENCE, value), 3)


def heuristic_analysis(
    request: AnalysisRequest, *, taxonomy: Taxonomy, rules: SeverityRules
) -> Analysis:
    """The analysis of ``request`` (see the module docstring). Pure, deterministic and
    thread-safe; CPU time grows linearly with the text, so callers on the event loop
    should run large requests in a thread (:class:`HeuristicAnalyzer` does).

    Raises:
        pydantic.ValidationError: only on a bug (the result is validated to be sure).
    """
    pieces: list[tuple[str, float]] = [(request.title, TITLE_FACTOR)] if request.title else []
    pieces += [(chunk, 1.0) for chunk in request.chunks]
    evidence = merge_evidence(
        [gather_evidence(t, taxonomy=taxonomy, rules=rules, factor=f) for t, f in pieces]
    )
    category = choose_category(evidence, taxonomy)
    floor = rules.for_category(category)
    severity = Severity.highest([floor, *evidence.severities.values()])

    summary = summarize(request.chunks[0]) if request.chunks else ""
    summary = summary or summarize(request.title) or EMPTY_SUMMARY
    texts = [request.title, *request.chunks]
    entities = dedupe(
        itertools.chain.from_iterable(extract_entities(text) for text in texts if text),
        limit=MAX_ENTITIES,
    )
    return parse_analysis(
        {
            "category": category,
            "severity": severity,
            "summary": summary,
            "entities": entities,
            "confidence": confidence_of(evidence, category),
            "rationale": _rationale(evidence, category, severity, floor, request),
        },
        taxonomy=taxonomy,
    )


def _rationale(
    evidence: Evidence,
    category: str,
    severity: Severity,
    floor: Severity,
    request: AnalysisRequest,
) -> str:
    hits = evidence.hits.get(category)
    if hits:
        terms = sorted(hits.items(), key=lambda item: (-item[1], item[0]))[:RATIONALE_TERMS]
        listed = ", ".join(f"{t} (x{n})" if n > 1 else t for t, n in terms)
        parts = [f"Category {category}: keywords {listed}."]
    else:
        parts = [f"Category {category}: no category keywords matched."]
    deciding = sorted(t for t, s in evidence.severities.items() if s is severity)
    if deciding and severity > floor:
        parts.append(f"Severity {severity}: keywords {', '.join(deciding[:RATIONALE_TERMS])}.")
    elif deciding:
        listed = ", ".join(deciding[:RATIONALE_TERMS])
        parts.append(f"Severity {severity}: category default; keywords {listed}.")
    else:
        parts.append(f"Severity {severity}: default for the category.")
    if request.chunked:
        parts.append(f"Analysed {len(request.chunks)} chunks.")
    if request.truncated:
        parts.append("The text was truncated before analysis.")
    text = " ".join(parts)
    if len(text) > RATIONALE_MAX_CHARS:
        text = text[: RATIONALE_MAX_CHARS - len(ELLIPSIS)] + ELLIPSIS
    return text


@attrs.frozen(kw_only=True)
class HeuristicAnalyzer:
    """The ``heuristic`` :class:`~daemon.modules.analysis.provider.Analyzer`.

    Requests up to ``inline_max_chars`` characters are analysed on the event loop (about
    two milliseconds at most); larger ones in a worker thread, so a huge document never
    stalls other tasks: through ``offload`` when given (an async callable running a
    zero-argument function elsewhere, e.g. a shared CPU pool's ``run``), else
    ``trio.to_thread.run_sync``. With the latter, cancelling ``analyze`` while the thread
    runs waits for it (bounded by the text size), then raises ``Cancelled``.
    Never raises for any text. Category defaults in ``rules`` for categories the
    taxonomy lacks are inert (``parse_severity_rules(..., taxonomy=...)`` catches typos).
    """

    taxonomy: Taxonomy = DEFAULT_TAXONOMY
    rules: SeverityRules = DEFAULT_SEVERITY_RULES
    inline_max_chars: int = INLINE_MAX_CHARS
    offload: Callable[[Callable[[], Analysis]], Awaitable[Analysis]] | None = attrs.field(
        default=None, eq=False, repr=False
    )
    name: str = attrs.field(default=PROVIDER_NAME, init=False)
    model: str = attrs.field(default=MODEL_NAME, init=False)
    version: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        version = f"{RULES_VERSION}+{self.taxonomy.fingerprint}.{self.rules.fingerprint}"
        object.__setattr__(self, "version", version)

    async def analyze(self, request: AnalysisRequest) -> AnalysisOutcome:
        """The analysis of ``request`` with its accounting (see the class docstring)."""
        started = time.perf_counter()
        run = functools.partial(
            heuristic_analysis, request, taxonomy=self.taxonomy, rules=self.rules
        )
        if request.size <= self.inline_max_chars:
            await trio.lowlevel.checkpoint()
            analysis = run()
        elif self.offload is not None:
            analysis = await self.offload(run)
        else:
            analysis = await trio.to_thread.run_sync(run)
        return AnalysisOutcome(
            analysis=analysis,
            provider=self.name,
            model=self.model,
            version=self.version,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            calls=max(1, len(request.chunks)),
            chunked=request.chunked,
        )
