"""The ``openai`` analyzer provider: analysis by any OpenAI-compatible chat-completions
server (vLLM, Ollama, llama.cpp's server, LocalAI, OpenAI itself).

Public face::

    from daemon.modules.analysis.llm import LlmConfig, OpenAIAnalyzer

    config = LlmConfig(base_url="http://127.0.0.1:8000/v1", model="qwen2.5-7b-instruct")
    async with OpenAIAnalyzer(config, taxonomy=taxonomy) as analyzer:
        outcome = await analyzer.analyze(request)   # AnalysisOutcome
        analyzer.status()                           # "ok" | "degraded: ..."
        analyzer.stats.snapshot()                   # totals for the metrics endpoint

Errors: ``AnalyzerUnavailable`` (and ``AnalyzerRateLimited``) are transient,
``AnalysisFailed`` is permanent (see :mod:`daemon.shared.errors`). Modules: ``config``
(the settings value), ``prompt`` (delimited prompts), ``client`` (HTTP and error
translation), ``output`` (JSON extraction, normalization, validation), ``merge`` (chunk
analyses into one), ``breaker`` (the circuit breaker), ``stats``, ``provider``.
"""

from __future__ import annotations

from daemon.modules.analysis.llm.breaker import BreakerState, CircuitBreaker
from daemon.modules.analysis.llm.client import OutputMode
from daemon.modules.analysis.llm.config import LlmConfig
from daemon.modules.analysis.llm.prompt import PROMPT_VERSION
from daemon.modules.analysis.llm.provider import PROVIDER_NAME, OpenAIAnalyzer
from daemon.modules.analysis.llm.stats import LlmStats

__all__ = [
    "PROMPT_VERSION",
    "PROVIDER_NAME",
    "BreakerState",
    "CircuitBreaker",
    "LlmConfig",
    "LlmStats",
    "OpenAIAnalyzer",
    "OutputMode",
]
