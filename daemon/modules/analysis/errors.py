"""The analysis module's errors: an analyzer that could not produce a valid analysis, or
cannot be used now (their place in the tree: :mod:`daemon.shared.errors`)."""

from __future__ import annotations

from daemon.shared.errors import DaemonError


class AnalysisError(DaemonError):
    """The document could not be analysed."""


class AnalysisFailed(AnalysisError):
    """The model's answer is not a valid analysis, even after a repair round."""

    # The pipeline retries it like a transient error, spending an attempt (a model's
    # answers vary); when attempts run out the document fails with the raw output in its
    # error. ``raw_output`` is the model's last answer as received (for the operator
    # tuning prompts), ``errors`` what was wrong with it, one readable line each.

    def __init__(self, message: str | None = None, *, raw_output: str, errors: list[str]) -> None:
        self.raw_output = raw_output
        self.errors = errors
        super().__init__(message)


class AnalyzerUnavailable(AnalysisError):
    """The analyzer's model server cannot be used now."""

    # Transient and not the document's fault: the pipeline reschedules the job without
    # spending an attempt, after ``retry_after`` seconds when known (Retry-After, or the
    # time until the circuit breaker's next probe). ``reason`` is a short stable word
    # for logs, metrics and /readyz: "server_error", "timeout", "connection",
    # "protocol", "misconfigured" (401, 403, 404: the operator must act), "rate_limited"
    # or "circuit_open".

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: str = "unavailable",
        retry_after: float | None = None,
    ) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(message)


class AnalyzerRateLimited(AnalyzerUnavailable):
    """The analyzer's model server asks us to slow down (HTTP 429)."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message, reason="rate_limited", retry_after=retry_after)
