"""Analysis: the analyzer provider, the model server, the taxonomy and rules.

A group of fields of :class:`daemon.shared.config.Settings` (field ``x`` is read from
``TRIAGED_X``)."""

from __future__ import annotations

from typing import Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, model_validator

from daemon.shared.config.values import (
    AnalyzerName,
)


class AnalysisSettings(BaseModel):
    """Analysis: the analyzer provider, the model server, the taxonomy and rules."""

    analyzer: AnalyzerName = Field(
        default=AnalyzerName.HEURISTIC,
        description="The analyzer provider: heuristic (built in) or openai (any "
        "OpenAI-compatible server: vLLM, Ollama, llama.cpp, LocalAI).",
    )
    llm_base_url: str | None = Field(
        default=None,
        description="With analyzer=openai: the server's base URL, e.g. "
        "http://127.0.0.1:8000/v1 (the path before /chat/completions).",
    )
    llm_model: str | None = Field(
        default=None, max_length=200, description="With analyzer=openai: the model name."
    )
    llm_api_key: SecretStr | None = Field(
        default=None, description="Bearer key for the model server (a secret); unset: none."
    )
    llm_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=600, description="Time to connect to the model server."
    )
    llm_timeout_seconds: float = Field(
        default=120.0, gt=0, le=3600, description="Total time one model call may take."
    )
    llm_temperature: float = Field(
        default=0.0, ge=0, le=2, description="Sampling temperature of model calls."
    )
    llm_max_concurrency: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="Model calls in flight at once in this process (all documents together).",
    )
    llm_max_calls_per_document: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="Most model calls for one document (chunks, repairs, the merged summary).",
    )
    llm_breaker_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Consecutive failed model calls that open the circuit breaker (analysis "
        "jobs then wait instead of calling).",
    )
    llm_breaker_probe_seconds: float = Field(
        default=2.0,
        gt=0,
        le=600,
        description="While the breaker is open, how often one call probes the server.",
    )
    taxonomy: str | None = Field(
        default=None,
        description='Categories and their keywords as JSON, e.g. {"billing": ["invoice", '
        '"refund*"]}; unset: the built-in taxonomy. "other" is always added.',
    )
    severity_rules: str | None = Field(
        default=None,
        description="Severity rules as JSON (keywords -> minimum severity, category "
        "defaults); unset: the built-in rules.",
    )
    routing_rules: str | None = Field(
        default=None,
        description="When a case opens, its SLA per severity, assignees and tags, as JSON; "
        "unset: cases for high and critical, and for security, legal and privacy.",
    )
    analyzer_chunk_chars: int = Field(
        default=8000,
        ge=200,
        le=1_000_000,
        description="Longest piece of text given to the analyzer at once; longer texts "
        "are chunked.",
    )
    analyzer_max_chunks: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="Most chunks analysed per document; the rest is left out (the "
        "analysis says truncated).",
    )

    @model_validator(mode="after")
    def _llm_configured(self) -> Self:
        if self.analyzer is AnalyzerName.OPENAI:
            missing = [
                f"TRIAGED_{name.upper()}"
                for name in ("llm_base_url", "llm_model")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"TRIAGED_ANALYZER=openai needs {' and '.join(missing)}")
        if self.llm_base_url is not None:
            parts = urlsplit(self.llm_base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("TRIAGED_LLM_BASE_URL must be an http(s) URL")
        return self
