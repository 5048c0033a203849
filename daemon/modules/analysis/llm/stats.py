"""Running totals of one ``openai`` analyzer, for the metrics endpoint.

Plain integers, updated on the event loop as calls end; read them at any time (or take
:meth:`LlmStats.snapshot`). They only grow, so they map onto Prometheus counters.
"""

from __future__ import annotations

import attrs


@attrs.define
class LlmStats:
    """Totals since the analyzer was built.

    - ``calls``: HTTP requests sent to the model server (repairs, summaries and requests
      refused for their ``response_format`` included);
    - ``failures``: of those, transient failures (5xx, timeouts, connections, protocol,
      401/403/404); ``rate_limited``: 429 answers (not counted as failures);
    - ``circuit_rejections``: calls not sent because the circuit was open;
    - ``repairs``: repair rounds; ``invalid_outputs``: analyses given up as invalid
      (``AnalysisFailed``); ``analyses``: analyses returned;
    - ``prompt_tokens``, ``completion_tokens``: as reported by the server;
    - ``format_fallbacks``: times the output mode was lowered; ``breaker_opened``: times
      the circuit opened.
    """

    calls: int = 0
    failures: int = 0
    rate_limited: int = 0
    circuit_rejections: int = 0
    repairs: int = 0
    invalid_outputs: int = 0
    analyses: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    format_fallbacks: int = 0
    breaker_opened: int = 0

    def snapshot(self) -> dict[str, int]:
        """The totals as a new dict (name -> value)."""
        return attrs.asdict(self)
