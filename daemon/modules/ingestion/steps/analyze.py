"""The analyze step: each document's chunks go to the analyzer its job asks for (the
configured one, or another provider or model for a reanalysis), all of the batch at
once; the analysis is written with the advance in one statement (the ``write_analyses``
CTE: a new analysis run, made the document's current one, its category and severity on
the document's row).

Outcomes other than an analysis, per document: ``AnalyzerUnavailable`` (the model
server is away: the job is rescheduled), ``AnalysisFailed`` (its output stayed invalid:
retried), ``PermanentFailure`` (a malformed or impossible analyzer choice in the job).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import attrs
import trio

from daemon.modules.analysis import AnalysisRequest, BatchAnalyzer
from daemon.modules.ingestion.states import step_named
from daemon.modules.ingestion.steps.contract import Group, Move, Read, Settled, StepWork, split
from daemon.modules.ingestion.store import analysis_row
from daemon.queue import PermanentFailure
from daemon.shared.errors import CpuWorkerLost

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.modules.analysis import AnalysisOutcome, Analyzer, AnalyzerSet
    from daemon.modules.ingestion.states import Step
    from daemon.modules.ingestion.steps.contract import JobOptions
    from daemon.modules.ingestion.store import IngestionStore


@attrs.frozen(kw_only=True)
class AnalyzeInput:
    """The analyzer to ask and what to ask it."""

    analyzer: Analyzer
    request: AnalysisRequest


@attrs.frozen
class AnalyzeStep(StepWork[AnalyzeInput, "Move[None]", None]):
    step: ClassVar[Step] = step_named("analyze")
    writes: ClassVar[str | None] = "write_analyses"
    new_analyses: ClassVar[bool] = True

    store: IngestionStore
    analyzers: AnalyzerSet

    async def read(self, documents: Mapping[int, JobOptions]) -> Read[AnalyzeInput]:
        settled: dict[int, Settled] = {}
        analyzers: dict[int, Analyzer] = {}
        for document_id, options in documents.items():
            try:
                analyzers[document_id] = self._analyzer_for(options.get("analyzer"))
            except PermanentFailure as exc:
                settled[document_id] = exc
        if not analyzers:
            return Read(settled=settled)
        found = await self.store.read_inputs(
            self.step,
            "analysis_input",
            list(analyzers),
            needs=4,
            error="the document's normalized text is missing",
        )
        rows, missing = split(found)
        settled.update(missing)
        inputs: dict[int, AnalyzeInput] = {}
        for document_id, row in rows.items():
            _state, title, language, metadata, chunks, truncated = row
            inputs[document_id] = AnalyzeInput(
                analyzer=analyzers[document_id],
                request=AnalysisRequest(
                    title=title or "",
                    chunks=list(chunks),
                    language=language,
                    truncated=bool(truncated),
                    metadata=dict(metadata or {}),
                ),
            )
        return Read(groups=[Group(inputs=inputs)] if inputs else [], settled=settled)

    def _analyzer_for(self, choice: object) -> Analyzer:
        """The analyzer a job asks for (none: the configured one).

        Raises:
            PermanentFailure: a malformed or impossible choice (retrying cannot help).
        """
        if choice is None:
            return self.analyzers.default
        if not isinstance(choice, dict) or not all(
            isinstance(choice.get(k), str | None) for k in ("provider", "model")
        ):
            raise PermanentFailure(f"invalid analyzer choice in the job: {choice!r}")
        try:
            return self.analyzers.get(choice.get("provider"), choice.get("model"))
        except ValueError as exc:
            raise PermanentFailure(f"analyzer choice: {exc}") from None

    async def compute(self, inputs: Mapping[int, AnalyzeInput]) -> dict[int, Move[None] | Settled]:
        """Every document's analysis at once: a batch analyzer's share in one call (the
        heuristic's, in the CPU worker processes), any other analyzer's one request per
        document, all concurrently."""
        outputs: dict[int, Move[None] | Settled] = {}
        batches: dict[int, tuple[BatchAnalyzer, list[int]]] = {}
        singles: list[int] = []
        for document_id, value in inputs.items():
            if isinstance(value.analyzer, BatchAnalyzer):
                batches.setdefault(id(value.analyzer), (value.analyzer, []))[1].append(document_id)
            else:
                singles.append(document_id)

        lost: list[CpuWorkerLost] = []

        async def analyze_batch(analyzer: BatchAnalyzer, ids: list[int]) -> None:
            try:
                outcomes = await analyzer.analyze_many([inputs[i].request for i in ids])
            except CpuWorkerLost as exc:
                if len(ids) == 1:
                    outputs[ids[0]] = exc
                else:  # maybe one document's: the runner retries them one by one
                    lost.append(exc)
                return
            except Exception as exc:  # every document's outcome
                outputs.update(dict.fromkeys(ids, exc))
                return
            for document_id, outcome in zip(ids, outcomes, strict=True):
                outputs[document_id] = self._move(inputs[document_id], outcome)

        async def analyze_one(document_id: int) -> None:
            value = inputs[document_id]
            try:
                outcome = await value.analyzer.analyze(value.request)
            except Exception as exc:  # this document's outcome, not the batch's
                outputs[document_id] = exc
                return
            outputs[document_id] = self._move(value, outcome)

        async with trio.open_nursery() as nursery:
            for analyzer, ids in batches.values():
                nursery.start_soon(analyze_batch, analyzer, ids)
            for document_id in singles:
                nursery.start_soon(analyze_one, document_id)
        if lost:
            raise lost[0]
        return outputs

    def _move(
        self, value: AnalyzeInput, outcome: AnalysisOutcome | Exception
    ) -> Move[None] | Settled:
        if isinstance(outcome, Exception):
            return outcome
        analysis = outcome.analysis
        return Move(
            to_state=self.step.to_state,
            detail={
                "provider": outcome.provider,
                "category": analysis.category,
                "severity": analysis.severity.value,
            },
            columns={"category": analysis.category, "severity": analysis.severity.value},
            row=analysis_row(outcome, truncated=value.request.truncated),
        )
