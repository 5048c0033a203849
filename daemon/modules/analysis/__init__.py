"""Document analysis: the result schema, the taxonomy, severity rules, the analyzer
provider interface and the built-in ``heuristic`` provider. Pure: no database, no
settings; the composition root builds an :class:`AnalyzerConfig` from the settings and
the ``analyze`` pipeline step uses the analyzers built from it.

Public face::

    from daemon.modules.analysis import Analyzer, AnalysisRequest, HeuristicAnalyzer, ...

    analyzer = HeuristicAnalyzer(taxonomy=parse_taxonomy(text), rules=parse_severity_rules(text2))
    outcome = await analyzer.analyze(AnalysisRequest(title=..., chunks=[...]))
    outcome.analysis.category, outcome.analysis.severity, outcome.latency_ms, ...

An LLM provider validates its model's JSON with :func:`parse_analysis_json` (category
first passed through :meth:`Taxonomy.coerce_category`) and asks for
:func:`response_format`. Parsers of configuration text raise ``ValueError`` naming the
problem; validation of analyses raises ``pydantic.ValidationError``.
"""

from __future__ import annotations

from daemon.modules.analysis.entities import extract_entities
from daemon.modules.analysis.errors import (
    AnalysisError,
    AnalysisFailed,
    AnalyzerRateLimited,
    AnalyzerUnavailable,
)
from daemon.modules.analysis.factory import (
    AnalyzerConfig,
    AnalyzerSet,
    Provider,
    build_analyzer,
    check_analyzer_choice,
)
from daemon.modules.analysis.heuristic import HeuristicAnalyzer, heuristic_analysis
from daemon.modules.analysis.llm import LlmConfig
from daemon.modules.analysis.provider import (
    AnalysisOutcome,
    AnalysisRequest,
    Analyzer,
    BatchAnalyzer,
)
from daemon.modules.analysis.schema import (
    MAX_ENTITIES,
    SUMMARY_MAX_CHARS,
    Analysis,
    Entity,
    EntityType,
    Severity,
    analysis_json_schema,
    parse_analysis,
    parse_analysis_json,
    response_format,
)
from daemon.modules.analysis.severity_rules import (
    DEFAULT_SEVERITY_RULES,
    SeverityRules,
    parse_severity_rules,
)
from daemon.modules.analysis.summary import summarize
from daemon.modules.analysis.taxonomy import (
    DEFAULT_TAXONOMY,
    OTHER,
    Category,
    Keyword,
    Taxonomy,
    parse_taxonomy,
)

__all__ = [
    "DEFAULT_SEVERITY_RULES",
    "DEFAULT_TAXONOMY",
    "MAX_ENTITIES",
    "OTHER",
    "SUMMARY_MAX_CHARS",
    "Analysis",
    "AnalysisError",
    "AnalysisFailed",
    "AnalysisOutcome",
    "AnalysisRequest",
    "Analyzer",
    "AnalyzerConfig",
    "AnalyzerRateLimited",
    "AnalyzerSet",
    "AnalyzerUnavailable",
    "BatchAnalyzer",
    "Category",
    "Entity",
    "EntityType",
    "HeuristicAnalyzer",
    "Keyword",
    "LlmConfig",
    "Provider",
    "Severity",
    "SeverityRules",
    "Taxonomy",
    "analysis_json_schema",
    "build_analyzer",
    "check_analyzer_choice",
    "extract_entities",
    "heuristic_analysis",
    "parse_analysis",
    "parse_analysis_json",
    "parse_severity_rules",
    "parse_taxonomy",
    "response_format",
    "summarize",
]
