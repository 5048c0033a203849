"""Request counts and durations per route template (never per raw path: unbounded
label values would grow the registry with every id and every scanner's probe)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from quart import g, request

from daemon.api.context import current_context

if TYPE_CHECKING:
    from quart import Response

_STARTED = "metrics_started"
UNMATCHED = "(unmatched)"


async def start_timer() -> None:
    """``before_request``: registered first, so it runs before authentication."""
    setattr(g, _STARTED, time.perf_counter())


async def record_request(response: Response) -> Response:
    """``after_request``: count the request and observe its duration."""
    started: float | None = getattr(g, _STARTED, None)
    registry = current_context().registry
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    labels = (request.method, route, str(response.status_code))
    registry.counter(
        "triaged_http_requests_total",
        "HTTP requests answered, by method, route template and status.",
        ["method", "route", "status"],
    ).inc(*labels)
    if started is not None:
        registry.histogram(
            "triaged_http_request_duration_seconds",
            "Time to produce the response (not to send its body), by method and route.",
            ["method", "route"],
        ).observe(time.perf_counter() - started, request.method, route)
    return response
