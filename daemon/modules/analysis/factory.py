"""The analyzer the settings ask for, built once per process (the composition root
calls this; the pipeline and ``triaged analyze`` receive the result)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.modules.analysis.heuristic import HeuristicAnalyzer
from daemon.modules.analysis.severity_rules import DEFAULT_SEVERITY_RULES, parse_severity_rules
from daemon.modules.analysis.taxonomy import DEFAULT_TAXONOMY, parse_taxonomy
from daemon.shared.config import AnalyzerName
from daemon.shared.cpu_threads import CpuThreads, usable_cpus
from daemon.shared.metrics import Counter

if TYPE_CHECKING:
    from daemon.modules.analysis.provider import Analyzer
    from daemon.modules.analysis.taxonomy import Taxonomy
    from daemon.shared.config import Settings
    from daemon.shared.metrics import Metric

# Heuristic analysis of big documents: off the event loop, at low priority.
_CPU = CpuThreads(usable_cpus(), name="analysis")


def build_taxonomy(settings: Settings) -> Taxonomy:
    """The configured taxonomy (settings validation already parsed it once)."""
    return DEFAULT_TAXONOMY if settings.taxonomy is None else parse_taxonomy(settings.taxonomy)


def build_analyzer(settings: Settings, taxonomy: Taxonomy) -> Analyzer:
    """The provider named by ``TRIAGED_ANALYZER``. An ``openai`` analyzer owns an HTTP
    client: close it with ``await analyzer.aclose()`` when done."""
    if settings.analyzer is AnalyzerName.OPENAI:
        from daemon.modules.analysis.llm import LlmConfig, OpenAIAnalyzer

        assert settings.llm_base_url is not None and settings.llm_model is not None
        config = LlmConfig(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=(
                None if settings.llm_api_key is None else settings.llm_api_key.get_secret_value()
            ),
            connect_timeout=settings.llm_connect_timeout_seconds,
            total_timeout=settings.llm_timeout_seconds,
            temperature=settings.llm_temperature,
            max_concurrency=settings.llm_max_concurrency,
            max_calls_per_document=settings.llm_max_calls_per_document,
            breaker_failures=settings.llm_breaker_failures,
            breaker_probe_interval=settings.llm_breaker_probe_seconds,
        )
        return OpenAIAnalyzer(config, taxonomy=taxonomy)
    rules = (
        DEFAULT_SEVERITY_RULES
        if settings.severity_rules is None
        else parse_severity_rules(settings.severity_rules, taxonomy=taxonomy)
    )
    return HeuristicAnalyzer(taxonomy=taxonomy, rules=rules, offload=_CPU.run)


def check_analyzer_choice(settings: Settings, provider: str | None, model: str | None) -> None:
    """Whether ``provider``/``model`` can override the configured analyzer.

    Raises:
        ValueError: ``"<field>: <what is wrong>"``.
    """
    if provider is None:
        if model is not None and settings.analyzer is not AnalyzerName.OPENAI:
            raise ValueError("model: the configured analyzer has no models to choose")
        return
    try:
        name = AnalyzerName(provider)
    except ValueError:
        choices = ", ".join(a.value for a in AnalyzerName)
        raise ValueError(f"provider: one of {choices}") from None
    if name is AnalyzerName.OPENAI and not (
        settings.llm_base_url and (model or settings.llm_model)
    ):
        raise ValueError("provider: openai is not configured (TRIAGED_LLM_BASE_URL, _MODEL)")
    if name is AnalyzerName.HEURISTIC and model is not None:
        raise ValueError("model: the heuristic analyzer has no models to choose")


class AnalyzerSet:
    """The process's analyzer and, built on first use and kept, the variants an admin
    asks for when reanalysing (another provider, another model of the same server).

    Variants share the settings' server, timeouts and limits; only the provider or the
    model differs. ``status`` and ``aclose`` cover every analyzer built.
    """

    def __init__(self, settings: Settings, taxonomy: Taxonomy) -> None:
        self.settings = settings
        self.taxonomy = taxonomy
        self.default = build_analyzer(settings, taxonomy)
        self._variants: dict[tuple[str, str | None], Analyzer] = {}

    def get(self, provider: str | None = None, model: str | None = None) -> Analyzer:
        """The analyzer for an override (both None: the default)."""
        if provider is None and model is None:
            return self.default
        check_analyzer_choice(self.settings, provider, model)
        key = (provider or self.settings.analyzer.value, model)
        variant = self._variants.get(key)
        if variant is None:
            changes: dict[str, object] = {"analyzer": AnalyzerName(key[0])}
            if model is not None:
                changes["llm_model"] = model
            settings = self.settings.model_copy(update=changes)
            variant = self._variants[key] = build_analyzer(settings, self.taxonomy)
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
