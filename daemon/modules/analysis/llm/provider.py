"""The ``openai`` analyzer provider: any OpenAI-compatible chat-completions server.

How one document is analysed (:meth:`OpenAIAnalyzer.analyze`):

1. Each chunk (the title alone when there are none; nothing at all: no call, an
   ``other``/``low`` analysis) is sent on its own, in order, with the title, inside
   random delimiters (:mod:`.prompt`). Chunks are analysed one after another, so the
   per-document call budget is spent in document order.
2. The answer is extracted, normalized and validated (:mod:`.output`). If invalid, one
   repair round: the answer and its errors go back to the model in the same
   conversation. Still invalid: :class:`AnalysisFailed` with the last raw answer.
3. Several chunks: merged (:mod:`.merge`), with one more call to summarize the part
   summaries when the budget allows.
4. ``max_calls_per_document`` counts chunk, repair and summary calls. Chunks that no
   longer fit are skipped (``AnalysisOutcome.skipped_chunks``, noted in the rationale);
   a chunk whose answer is invalid when no call is left for its repair is skipped too,
   unless it is the first (then :class:`AnalysisFailed`).

Structured output: ``response_format`` ``json_schema`` first; when the server refuses it
(:class:`.client.FormatRejected`) the analyzer falls back to ``json_object``, then to no
``response_format`` (the JSON is found in the text), retries the same call at once, and
keeps the mode that worked for all later calls. Refused calls cost no budget.

Being a good client: at most ``max_concurrency`` calls in flight across every caller of
the instance (a ``trio.CapacityLimiter``), and a circuit breaker (:mod:`.breaker`) that,
after ``breaker_failures`` consecutive transient failures, refuses calls without sending
them (:class:`AnalyzerUnavailable` with ``reason="circuit_open"`` and ``retry_after`` =
seconds to the next probe) until a probe call succeeds. :meth:`OpenAIAnalyzer.status`
says ``"ok"`` or ``"degraded: ..."``; :attr:`OpenAIAnalyzer.stats` holds the totals.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Self

import attrs
import trio

from daemon.modules.analysis.errors import (
    AnalysisError,
    AnalysisFailed,
    AnalyzerRateLimited,
    AnalyzerUnavailable,
)
from daemon.modules.analysis.llm.breaker import BreakerState, CircuitBreaker
from daemon.modules.analysis.llm.client import ChatClient, ChatReply, FormatRejected, OutputMode
from daemon.modules.analysis.llm.merge import merge_analyses
from daemon.modules.analysis.llm.output import OutputInvalid, parse_output, parse_summary
from daemon.modules.analysis.llm.prompt import (
    SUMMARY_SCHEMA_NAME,
    new_delimiters,
    repair_messages,
    summary_json_schema,
    summary_system_prompt,
    summary_user_message,
    system_prompt,
    user_message,
)
from daemon.modules.analysis.llm.stats import LlmStats
from daemon.modules.analysis.provider import AnalysisOutcome
from daemon.modules.analysis.schema import Severity, parse_analysis, response_format
from daemon.modules.analysis.taxonomy import DEFAULT_TAXONOMY, OTHER, Taxonomy

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    import httpx

    from daemon.modules.analysis.llm.config import LlmConfig
    from daemon.modules.analysis.llm.prompt import Message
    from daemon.modules.analysis.provider import AnalysisRequest
    from daemon.modules.analysis.schema import Analysis

PROVIDER_NAME = "openai"
EMPTY_SUMMARY = "The document has no text."
EMPTY_RATIONALE = "The document has no text; no model call was made."

log = logging.getLogger("triaged.analysis")


@attrs.define
class _Run:
    """The accounting of one ``analyze`` call."""

    budget: int
    calls: int = 0
    repair_rounds: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def calls_left(self) -> int:
        return self.budget - self.calls

    def count(self, reply: ChatReply) -> None:
        self.calls += 1
        if reply.prompt_tokens is not None:
            self.prompt_tokens = (self.prompt_tokens or 0) + reply.prompt_tokens
        if reply.completion_tokens is not None:
            self.completion_tokens = (self.completion_tokens or 0) + reply.completion_tokens


class OpenAIAnalyzer:
    """The ``openai`` :class:`~daemon.modules.analysis.provider.Analyzer` (see the
    module docstring).

    ``transport`` replaces httpx's (tests); ``clock`` is the breaker's monotonic clock in
    seconds. One instance serves any number of concurrent ``analyze`` calls; use it as
    an async context manager, or call :meth:`aclose`, to close its connections.
    """

    def __init__(
        self,
        config: LlmConfig,
        *,
        taxonomy: Taxonomy = DEFAULT_TAXONOMY,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.taxonomy = taxonomy
        self.stats = LlmStats()
        self.breaker = CircuitBreaker(
            failure_threshold=config.breaker_failures,
            probe_interval=config.breaker_probe_interval,
            clock=clock,
        )
        self._client = ChatClient(config, transport=transport)
        self._limiter = trio.CapacityLimiter(config.max_concurrency)
        self._mode = OutputMode.JSON_SCHEMA
        self._misconfigured: str | None = None
        self._analysis_format = response_format(taxonomy)
        self._summary_format = {
            "type": "json_schema",
            "json_schema": {
                "name": SUMMARY_SCHEMA_NAME,
                "strict": True,
                "schema": summary_json_schema(),
            },
        }

    @property
    def name(self) -> str:
        return PROVIDER_NAME

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def version(self) -> str:
        """The prompt version and the taxonomy's fingerprint."""
        return f"{self.config.prompt_version}+{self.taxonomy.fingerprint}"

    @property
    def output_mode(self) -> OutputMode:
        """How structured output is currently asked for."""
        return self._mode

    def __repr__(self) -> str:
        return f"OpenAIAnalyzer(base_url={self.config.base_url!r}, model={self.model!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections. Idempotent."""
        await self._client.aclose()

    def status(self) -> str:
        """``"ok"``, or ``"degraded: <reason>"`` while the circuit is not closed or since
        the server last answered as if misconfigured (401, 403, 404), for ``/readyz``."""
        breaker = self.breaker
        if breaker.state is BreakerState.OPEN:
            return (
                f"degraded: circuit open after {breaker.consecutive_failures} consecutive "
                f"failures ({breaker.last_failure}); next probe in "
                f"{breaker.next_probe_in():.0f} s"
            )
        if breaker.state is BreakerState.HALF_OPEN:
            return f"degraded: probing the model server ({breaker.last_failure})"
        if self._misconfigured is not None:
            return f"degraded: {self._misconfigured}"
        return "ok"

    async def analyze(self, request: AnalysisRequest) -> AnalysisOutcome:
        """The merged, validated analysis of ``request`` with its accounting.

        Cancellation-safe (nothing is left behind but pooled connections) and
        idempotent apart from the model's own variability.

        Raises:
            AnalyzerUnavailable: (or ``AnalyzerRateLimited``) the server cannot be used
                now, or the circuit is open; transient.
            AnalysisFailed: the answers stay invalid after a repair round, or the server
                refused this request; permanent.
        """
        started = time.perf_counter()
        run = _Run(budget=self.config.max_calls_per_document)
        pieces = list(request.chunks) or ([""] if request.title.strip() else [])
        if not pieces:
            return self._outcome(_empty_analysis(self.taxonomy), run, started, request, 0)
        parts: list[Analysis] = []
        for index, text in enumerate(pieces):
            if run.calls_left <= 0:
                break
            part = await self._analyze_piece(request, text, index, len(pieces), run, parts)
            if part is None:
                break
            parts.append(part)
        skipped = len(pieces) - len(parts)
        summary = None
        if len(parts) > 1 and run.calls_left > 0:
            summary = await self._summarize([p.summary for p in parts], run)
        note = None
        if skipped:
            note = f"Analysed {len(parts)} of {len(pieces)} parts (call budget)."
        analysis = merge_analyses(parts, taxonomy=self.taxonomy, summary=summary, note=note)
        self.stats.analyses += 1
        return self._outcome(analysis, run, started, request, skipped)

    def _outcome(
        self,
        analysis: Analysis,
        run: _Run,
        started: float,
        request: AnalysisRequest,
        skipped: int,
    ) -> AnalysisOutcome:
        return AnalysisOutcome(
            analysis=analysis,
            provider=self.name,
            model=self.model,
            version=self.version,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            calls=run.calls,
            repair_rounds=run.repair_rounds,
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens,
            chunked=request.chunked,
            skipped_chunks=skipped,
        )

    async def _analyze_piece(
        self,
        request: AnalysisRequest,
        text: str,
        index: int,
        count: int,
        run: _Run,
        parts: list[Analysis],
    ) -> Analysis | None:
        """One chunk's validated analysis; ``None`` when its answer is invalid, no call
        is left for a repair, and earlier chunks have answers."""
        delimiters = new_delimiters(request.title, text)
        messages: list[Message] = [
            {"role": "system", "content": system_prompt(self.taxonomy, delimiters)},
            {
                "role": "user",
                "content": user_message(
                    title=request.title,
                    text=text,
                    part=index + 1,
                    parts=count,
                    language=request.language,
                    delimiters=delimiters,
                ),
            },
        ]
        reply = await self._call(messages, run, self._analysis_format)
        try:
            return parse_output(reply.content, self.taxonomy, cut_off=_cut_off(reply))
        except OutputInvalid as invalid:
            if run.calls_left <= 0:
                if parts:
                    return None
                raise self._failed(
                    f"no call left for a repair round (budget {run.budget})", reply, invalid
                ) from None
            messages += repair_messages(reply.content, invalid.errors)
        run.repair_rounds += 1
        self.stats.repairs += 1
        reply = await self._call(messages, run, self._analysis_format)
        try:
            return parse_output(reply.content, self.taxonomy, cut_off=_cut_off(reply))
        except OutputInvalid as invalid:
            raise self._failed("still invalid after a repair round", reply, invalid) from None

    def _failed(self, why: str, reply: ChatReply, invalid: OutputInvalid) -> AnalysisFailed:
        self.stats.invalid_outputs += 1
        shown = "; ".join(invalid.errors[:5])
        log.warning(
            "the model's answer is not a valid analysis (%s): %s",
            why,
            shown,
            extra={"action": "llm.output_invalid", "model": self.model, "errors": invalid.errors},
        )
        return AnalysisFailed(
            f"the model's answer is not a valid analysis, {why}: {shown}",
            raw_output=reply.content,
            errors=invalid.errors,
        )

    async def _summarize(self, summaries: list[str], run: _Run) -> str | None:
        """A model's summary of the part summaries; ``None`` if that fails in any way
        (the caller joins the part summaries instead)."""
        delimiters = new_delimiters(*summaries)
        messages: list[Message] = [
            {"role": "system", "content": summary_system_prompt(delimiters)},
            {"role": "user", "content": summary_user_message(summaries, delimiters)},
        ]
        try:
            reply = await self._call(messages, run, self._summary_format)
        except AnalysisError:
            return None
        return parse_summary(reply.content)

    async def _call(
        self, messages: list[Message], run: _Run, schema_format: dict[str, Any]
    ) -> ChatReply:
        """One model call under the concurrency cap and the breaker, counted in ``run``
        and the stats; falls back to simpler output modes when the server refuses one."""
        while True:
            async with self._limiter:
                wait = self.breaker.before_call()
                if wait is not None:
                    self.stats.circuit_rejections += 1
                    raise AnalyzerUnavailable(
                        f"analysis is paused: the model server failed "
                        f"{self.breaker.consecutive_failures} times in a row "
                        f"({self.breaker.last_failure}); retry in {wait:.1f} s",
                        reason="circuit_open",
                        retry_after=wait,
                    )
                mode = self._mode
                fmt = {
                    OutputMode.JSON_SCHEMA: schema_format,
                    OutputMode.JSON_OBJECT: {"type": "json_object"},
                    OutputMode.TEXT: None,
                }[mode]
                self.stats.calls += 1
                settled = False
                try:
                    reply = await self._client.complete(messages, response_format=fmt)
                    settled = True
                except FormatRejected as exc:
                    settled = True
                    self._answered()
                    self._lower_mode(mode, str(exc))
                    continue
                except AnalyzerRateLimited:
                    settled = True
                    self.stats.rate_limited += 1
                    self._answered()
                    raise
                except AnalyzerUnavailable as exc:
                    settled = True
                    self._transient_failure(exc)
                    raise
                except AnalysisFailed:
                    settled = True
                    self._answered()
                    raise
                finally:
                    if not settled:
                        self.breaker.record_abandoned()
            self._answered()
            run.count(reply)
            self.stats.prompt_tokens += reply.prompt_tokens or 0
            self.stats.completion_tokens += reply.completion_tokens or 0
            return reply

    def _lower_mode(self, mode: OutputMode, detail: str) -> None:
        self.stats.format_fallbacks += 1
        lower = mode.fallback
        if self._mode is not mode or lower is None:
            return  # another call lowered it already (or nothing is left to drop)
        self._mode = lower
        log.warning(
            "the model server refused response_format %s (%s); using %s from now on",
            mode.value,
            detail,
            lower.value,
            extra={"action": "llm.output_mode_fallback", "from": mode.value, "to": lower.value},
        )

    def _answered(self) -> None:
        self._misconfigured = None
        if self.breaker.record_success():
            log.info(
                "the model server answers again; analysis resumes",
                extra={"action": "llm.breaker_closed", "model": self.model},
            )

    def _transient_failure(self, exc: AnalyzerUnavailable) -> None:
        self.stats.failures += 1
        if exc.reason == "misconfigured":
            self._misconfigured = exc.message
        was_probe = self.breaker.state is BreakerState.HALF_OPEN
        if self.breaker.record_failure(exc.message):
            self.stats.breaker_opened += 1
            log.warning(
                "the model server failed %d times in a row; analysis is paused, probing "
                "every %g s: %s",
                self.breaker.consecutive_failures,
                self.breaker.probe_interval,
                exc.message,
                extra={
                    "action": "llm.breaker_open",
                    "model": self.model,
                    "base_url": self.config.base_url,
                    "reason": exc.reason,
                },
            )
        elif was_probe:
            log.info(
                "the model server is still failing: %s",
                exc.message,
                extra={"action": "llm.breaker_probe_failed", "reason": exc.reason},
            )


def _cut_off(reply: ChatReply) -> bool:
    return reply.finish_reason == "length"


def _empty_analysis(taxonomy: Taxonomy) -> Analysis:
    return parse_analysis(
        {
            "category": OTHER,
            "severity": Severity.LOW,
            "summary": EMPTY_SUMMARY,
            "confidence": 0.0,
            "rationale": EMPTY_RATIONALE,
        },
        taxonomy=taxonomy,
    )
