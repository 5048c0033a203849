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
    from collections.abc import Sequence

    from daemon.modules.analysis.provider import AnalysisRequest
    from daemon.modules.analysis.schema import Analysis
    from daemon.shared.cpu_runner import CpuRunner

PROVIDER_NAME = "heuristic"
MODEL_NAME = "keyword-rules"
RULES_VERSION = "1"  # bump when the algorithm (not the configuration) changes
MAX_HITS_PER_KEYWORD = 3
TITLE_FACTOR = 2.0
INLINE_MAX_CHARS = 4_096  # a larger lone request is analysed off the loop (~0.5 µs/char)
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
    should run large requests elsewhere (:class:`HeuristicAnalyzer` does: in the CPU
    worker processes, or a thread).

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


def heuristic_analyses(
    requests: Sequence[AnalysisRequest], taxonomy: Taxonomy, rules: SeverityRules
) -> list[tuple[Analysis, float]]:
    """Each request's :func:`heuristic_analysis` and the seconds it took, in order (run
    in a CPU worker process by :meth:`HeuristicAnalyzer.analyze_many`)."""
    analyses = []
    for request in requests:
        started = time.perf_counter()
        analysis = heuristic_analysis(request, taxonomy=taxonomy, rules=rules)
        analyses.append((analysis, time.perf_counter() - started))
    return analyses


@attrs.frozen(kw_only=True)
class HeuristicAnalyzer:
    """The ``heuristic`` :class:`~daemon.modules.analysis.provider.Analyzer`.

    :meth:`analyze_many` (the analyze step's batches) analyses every request in one call of
    ``cpu`` (the process's CPU worker processes), so no analysis holds the event loop or
    its GIL; without ``cpu``, each request as :meth:`analyze` would.

    :meth:`analyze` (one request): up to ``inline_max_chars`` characters on the event loop
    (about two milliseconds at most); a larger one in ``cpu`` when given, else in a thread
    (``trio.to_thread.run_sync``: cancelling ``analyze`` then waits for the thread,
    bounded by the text size, and raises ``Cancelled``), so a huge document never stalls
    other tasks. Never raises for any text. Category defaults in ``rules`` for categories the
    taxonomy lacks are inert (``parse_severity_rules(..., taxonomy=...)`` catches typos).
    """

    taxonomy: Taxonomy = DEFAULT_TAXONOMY
    rules: SeverityRules = DEFAULT_SEVERITY_RULES
    inline_max_chars: int = INLINE_MAX_CHARS
    cpu: CpuRunner | None = attrs.field(default=None, eq=False, repr=False)
    name: str = attrs.field(default=PROVIDER_NAME, init=False)
    model: str = attrs.field(default=MODEL_NAME, init=False)
    version: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        version = f"{RULES_VERSION}+{self.taxonomy.fingerprint}.{self.rules.fingerprint}"
        object.__setattr__(self, "version", version)

    async def analyze(self, request: AnalysisRequest) -> AnalysisOutcome:
        """The analysis of ``request`` with its accounting (see the class docstring)."""
        if request.size <= self.inline_max_chars:
            await trio.lowlevel.checkpoint()
            [(analysis, seconds)] = heuristic_analyses([request], self.taxonomy, self.rules)
        elif self.cpu is not None:
            [(analysis, seconds)] = await self.cpu.run(
                heuristic_analyses, [request], self.taxonomy, self.rules
            )
        else:
            [(analysis, seconds)] = await trio.to_thread.run_sync(
                heuristic_analyses, [request], self.taxonomy, self.rules
            )
        # the analysis' own time, not a worker's start or the wait for a free one
        return self._outcome(request, analysis, seconds)

    async def analyze_many(
        self, requests: Sequence[AnalysisRequest]
    ) -> list[AnalysisOutcome | Exception]:
        """Each request's outcome, in order (see the class docstring). Each analysis
        records its own computing time as its latency."""
        if self.cpu is None:
            return [await self.analyze(request) for request in requests]
        analyses = await self.cpu.run(heuristic_analyses, list(requests), self.taxonomy, self.rules)
        return [
            self._outcome(request, analysis, seconds)
            for request, (analysis, seconds) in zip(requests, analyses, strict=True)
        ]

    def _outcome(
        self, request: AnalysisRequest, analysis: Analysis, seconds: float
    ) -> AnalysisOutcome:
        return AnalysisOutcome(
            analysis=analysis,
            provider=self.name,
            model=self.model,
            version=self.version,
            latency_ms=round(seconds * 1000, 3),
            calls=max(1, len(request.chunks)),
            chunked=request.chunked,
        )
