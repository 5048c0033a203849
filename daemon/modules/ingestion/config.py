"""The pipeline's configuration: typed, parsed and built once by whoever wires the
process (``daemon.composition.pipeline_config``); this module reads no
settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from datetime import timedelta

    from daemon.modules.analysis import AnalyzerSet, Taxonomy
    from daemon.modules.cases import RoutingRules
    from daemon.modules.ingestion.fetch import FetchPolicy
    from daemon.shared.cpu_runner import CpuRunner


@attrs.frozen(kw_only=True)
class PipelineConfig:
    """Everything the steps need: the process's analyzers, its CPU threads (``cpu``:
    hashing big contents, which releases the GIL) and CPU worker processes
    (``processes``: extraction and normalization, which hold it), the parsed taxonomy
    and routing rules, the fetch policy, and the limits."""

    analyzers: AnalyzerSet
    cpu: CpuRunner
    processes: CpuRunner
    taxonomy: Taxonomy
    routing: RoutingRules
    fetch: FetchPolicy
    chunk_chars: int
    max_chunks: int
    max_attempts: int
    retention: timedelta
    fetch_concurrency: int = 10  # URL downloads at once in the process
