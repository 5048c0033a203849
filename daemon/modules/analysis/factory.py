"""The analyzers of a process, built from a typed :class:`AnalyzerConfig`.

The composition root (:mod:`daemon.composition`) turns the settings into an
``AnalyzerConfig`` once; the pipeline, the API's reanalysis and ``triaged analyze``
receive what is built here. Nothing here reads the settings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import attrs

from daemon.modules.analysis.heuristic import HeuristicAnalyzer
from daemon.modules.analysis.severity_rules import DEFAULT_SEVERITY_RULES, SeverityRules
from daemon.modules.analysis.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from daemon.shared.metrics import Counter

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.modules.analysis.llm import LlmConfig
    from daemon.modules.analysis.provider import Analyzer
    from daemon.shared.cpu_runner import CpuRunner
    from daemon.shared.metrics import Metric


class Provider(StrEnum):
    """The analyzer providers."""

    HEURISTIC = "heuristic"  # built in, deterministic, no model server
    OPENAI = "openai"  # any OpenAI-compatible chat completions server


@attrs.frozen(kw_only=True)
class AnalyzerConfig:
    """What analysis is configured with.

    - ``provider``: the default analyzer's provider.
    - ``taxonomy``, ``severity_rules``: parsed once by the composition root.
    - ``llm``: the model server, as a function of the model name (the configured server,
      key, timeouts and limits; only the model varies), or None without a server.
    - ``llm_model``: the configured model (None: only a reanalysis naming one may use
      the server).
    - ``cpu``: the process's CPU worker processes; the heuristic analysis of the analyze
      step's batches, and of a lone big document, runs there (None: batches one request
      at a time, big documents on Trio's default threads).
    """

    provider: Provider = Provider.HEURISTIC
    taxonomy: Taxonomy = DEFAULT_TAXONOMY
    severity_rules: SeverityRules = DEFAULT_SEVERITY_RULES
    llm: Callable[[str], LlmConfig] | None = attrs.field(default=None, eq=False)
    llm_model: str | None = None
    cpu: CpuRunner | None = attrs.field(default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.provider is Provider.OPENAI and (self.llm is None or self.llm_model is None):
            raise ValueError("the openai provider needs a model server and a model")


def build_analyzer(config: AnalyzerConfig) -> Analyzer:
    """The analyzer of ``config.provider``. An ``openai`` analyzer owns an HTTP client:
    close it with ``await analyzer.aclose()`` when done."""
    if config.provider is Provider.OPENAI:
        from daemon.modules.analysis.llm import OpenAIAnalyzer

        assert config.llm is not None and config.llm_model is not None
        return OpenAIAnalyzer(config.llm(config.llm_model), taxonomy=config.taxonomy)
    return HeuristicAnalyzer(
        taxonomy=config.taxonomy,
        rules=config.severity_rules,
        cpu=config.cpu,
    )


def check_analyzer_choice(config: AnalyzerConfig, provider: str | None, model: str | None) -> None:
    """Whether ``provider``/``model`` can override the configured analyzer.

    Raises:
        ValueError: ``"<field>: <what is wrong>"``.
    """
    if provider is None:
        if model is not None and config.provider is not Provider.OPENAI:
            raise ValueError("model: the configured analyzer has no models to choose")
        return
    try:
        name = Provider(provider)
    except ValueError:
        choices = ", ".join(p.value for p in Provider)
        raise ValueError(f"provider: one of {choices}") from None
    if name is Provider.OPENAI and not (config.llm and (model or config.llm_model)):
        raise ValueError("provider: openai is not configured (TRIAGED_LLM_BASE_URL, _MODEL)")
    if name is Provider.HEURISTIC and model is not None:
        raise ValueError("model: the heuristic analyzer has no models to choose")


class AnalyzerSet:
    """The process's analyzer and, built on first use and kept, the variants an admin
    asks for when reanalysing (another provider, another model of the same server).

    Variants share the configured server, timeouts and limits; only the provider or the
    model differs. ``status`` and ``aclose`` cover every analyzer built.
    """

    def __init__(self, config: AnalyzerConfig) -> None:
        self.config = config
        self.taxonomy = config.taxonomy
        self.default = build_analyzer(config)
        self._variants: dict[tuple[str, str | None], Analyzer] = {}

    def get(self, provider: str | None = None, model: str | None = None) -> Analyzer:
        """The analyzer for an override (both None: the default)."""
        if provider is None and model is None:
            return self.default
        check_analyzer_choice(self.config, provider, model)
        key = (provider or self.config.provider.value, model)
        variant = self._variants.get(key)
        if variant is None:
            changed = attrs.evolve(
                self.config,
                provider=Provider(key[0]),
                llm_model=model if model is not None else self.config.llm_model,
            )
            variant = self._variants[key] = build_analyzer(changed)
        return variant

    def status(self) -> str:
        status = getattr(self.default, "status", None)
        return "ok" if status is None else str(status())

    async def aclose(self) -> None:
        for analyzer in [self.default, *self._variants.values()]:
            close = getattr(analyzer, "aclose", None)
            if close is not None:
                await close()

    def metrics(self) -> list[Metric]:
        """Counters of every analyzer built, for /metrics (see :func:`analyzer_metrics`)."""
        return analyzer_metrics([self.default, *self._variants.values()])


_LLM_COUNTERS = {
    "calls": "Requests sent to the model server (repairs and summaries included).",
    "failures": "Model calls that failed transiently (5xx, timeouts, connections).",
    "rate_limited": "Model calls answered 429 (the job waits; no attempt is spent).",
    "circuit_rejections": "Model calls not sent because the circuit breaker was open.",
    "repairs": "Repair rounds after invalid model output.",
    "invalid_outputs": "Analyses given up because the output stayed invalid.",
    "analyses": "Analyses the model server produced.",
    "prompt_tokens": "Prompt tokens reported by the model server.",
    "completion_tokens": "Completion tokens reported by the model server.",
    "format_fallbacks": "Times the structured-output mode was lowered for the server.",
    "breaker_opened": "Times the circuit breaker opened.",
}


def analyzer_metrics(analyzers: list[Analyzer]) -> list[Metric]:
    """Prometheus counters (``triaged_llm_<name>_total{model}``) from the ``stats`` of
    the analyzers that keep them (the LLM provider; the heuristic one keeps none)."""
    counters = {
        name: Counter(f"triaged_llm_{name}_total", help_text, ["model"])
        for name, help_text in _LLM_COUNTERS.items()
    }
    for analyzer in analyzers:
        stats = getattr(analyzer, "stats", None)
        if stats is None:
            continue
        for name, value in stats.snapshot().items():
            if name in counters:
                counters[name].inc(analyzer.model, amount=float(value))
    if not any(counter.values for counter in counters.values()):
        return []
    return list(counters.values())
