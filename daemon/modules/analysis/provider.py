"""The analyzer provider interface: one request in, one validated analysis out.

Every provider (the built-in ``heuristic``, later ``openai``) implements
:class:`Analyzer`. The pipeline's ``analyzed`` step builds an :class:`AnalysisRequest`
from the normalized document, awaits ``analyze`` and stores the :class:`AnalysisOutcome`
(the analysis plus its accounting). Providers hold no per-document state, so one instance
serves any number of concurrent calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from daemon.modules.analysis.schema import Analysis


def _text_chunks(chunks: Iterable[str]) -> tuple[str, ...]:
    if isinstance(chunks, str):
        raise TypeError("chunks must be a sequence of strings, not one string")
    result = tuple(chunks)
    if not all(isinstance(chunk, str) for chunk in result):
        raise TypeError("chunks must be strings")
    return result


@attrs.frozen(kw_only=True)
class AnalysisRequest:
    """What an analyzer sees of one document.

    ``chunks`` are the normalized text in order (one chunk for a short document; none for
    a document without text). ``truncated`` says the normalization step cut the text to
    its size budget. ``language`` is its guess (ISO 639-1) or ``None``. ``metadata`` is
    the document's client-supplied metadata: data, like the text, never instructions.
    """

    title: str = ""
    chunks: tuple[str, ...] = attrs.field(default=(), converter=_text_chunks)
    language: str | None = None
    truncated: bool = False
    metadata: Mapping[str, Any] = attrs.field(factory=dict, hash=False)

    @property
    def chunked(self) -> bool:
        """Whether the text came in more than one chunk."""
        return len(self.chunks) > 1

    @property
    def size(self) -> int:
        """Characters of text in the title and all chunks."""
        return len(self.title) + sum(len(chunk) for chunk in self.chunks)


@attrs.frozen(kw_only=True)
class AnalysisOutcome:
    """A validated analysis and how it was obtained.

    ``version`` identifies the prompt (LLM) or the rules (heuristic) so stored analyses
    can be told apart after a change. ``calls`` counts model calls including repairs (for
    the heuristic: chunks analysed, the title counting as none). Token counts are
    ``None`` where there is no model (or the model server reported none).
    ``skipped_chunks`` counts chunks left unanalysed (an LLM provider's per-document call
    budget ran out); ``truncated`` says the analysis saw less than the request's chunks
    (the request's own ``truncated`` is the normalization step's and is not repeated).
    """

    analysis: Analysis
    provider: str
    model: str
    version: str
    latency_ms: float
    calls: int = 1
    repair_rounds: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    chunked: bool = False
    skipped_chunks: int = 0

    @property
    def truncated(self) -> bool:
        """Whether some chunks of the request were not analysed."""
        return self.skipped_chunks > 0


@runtime_checkable
class Analyzer(Protocol):
    """An analyzer provider.

    ``name`` is the provider (``heuristic``, ``openai``), ``model`` what it runs, and
    ``version`` its prompt or rules version, all recorded with each analysis.

    ``analyze`` contract:

    - returns an :class:`AnalysisOutcome` whose analysis is valid for the provider's
      taxonomy (category within it; unknown answers mapped to ``other``);
    - never blocks the event loop for long (CPU-bound work goes to the CPU worker
      processes, or a thread);
    - is safe to cancel, and safe to call again for the same request (at-least-once
      delivery redelivers documents);
    - raises :class:`daemon.shared.errors.AnalysisError` (or a subclass) when no valid
      analysis can be had; any other exception is a bug or a transient failure.
    """

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def version(self) -> str: ...

    async def analyze(self, request: AnalysisRequest) -> AnalysisOutcome: ...


@runtime_checkable
class BatchAnalyzer(Analyzer, Protocol):
    """An analyzer that analyses many requests at once more cheaply than one by one (the
    heuristic: one hand-over to the CPU worker processes for a whole batch).

    ``analyze_many`` returns one entry per request, in order: its outcome, or the
    exception ``analyze`` would have raised for it; the other contracts of ``analyze``
    hold. An exception it raises is every request's.
    """

    async def analyze_many(
        self, requests: Sequence[AnalysisRequest]
    ) -> list[AnalysisOutcome | Exception]: ...
