"""Request counts and durations per method, route template and status.

Every label comes from a closed set (see :class:`daemon.shared.metrics.Label`): the
standard methods (anything else is ``other``), the app's own route templates (never the
raw path: a path that matches no route is ``unmatched``) and the status codes HTTP
defines (anything else is ``other``). So no request, however invented, adds a series:
the registry stays as small as the route table whatever a scanner sends.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import TYPE_CHECKING

import attrs
from quart import current_app, g, request

from daemon.api.context import current_context
from daemon.shared.metrics import Counter, Histogram, Label, Registry

if TYPE_CHECKING:
    from quart import Quart, Response

_STARTED = "metrics_started"
_EXTENSION = "triaged.http_metrics"

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods recorded by name; any other (CONNECT, TRACE, invented ones) is ``other``."""
STATUSES = frozenset(str(status.value) for status in HTTPStatus)
UNMATCHED = "unmatched"
"""The route label of a request whose path matches no route (404s, scanners)."""


@attrs.frozen
class HttpMetrics:
    """The two HTTP metrics of one app, declared with the app's route templates."""

    requests: Counter
    duration: Histogram

    @classmethod
    def declare(cls, registry: Registry, routes: frozenset[str]) -> HttpMetrics:
        """Declare (or find, when another app of the process did) the HTTP metrics."""
        method = Label.closed("method", METHODS)
        route = Label.closed("route", routes, other=UNMATCHED)
        status = Label.closed("status", STATUSES)
        return cls(
            requests=registry.counter(
                "triaged_http_requests_total",
                "HTTP requests answered, by method, route template and status.",
                [method, route, status],
            ),
            duration=registry.histogram(
                "triaged_http_request_duration_seconds",
                "Time to produce the response (not to send its body), by method and route.",
                [method, route],
            ),
        )


def route_templates(app: Quart) -> frozenset[str]:
    """Every route template of ``app``: the closed set of the ``route`` label."""
    return frozenset(rule.rule for rule in app.url_map.iter_rules())


def _metrics() -> HttpMetrics:
    # Declared on the first request, once every blueprint is registered.
    app = current_app
    metrics: HttpMetrics | None = app.extensions.get(_EXTENSION)
    if metrics is None:
        metrics = HttpMetrics.declare(current_context().registry, route_templates(app))
        app.extensions[_EXTENSION] = metrics
    return metrics


async def start_timer() -> None:
    """``before_request``: registered first, so it runs before authentication."""
    setattr(g, _STARTED, time.perf_counter())


async def record_request(response: Response) -> Response:
    """``after_request``: count the request and observe its duration."""
    started: float | None = getattr(g, _STARTED, None)
    metrics = _metrics()
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    metrics.requests.inc(request.method, route, str(response.status_code))
    if started is not None:
        metrics.duration.observe(time.perf_counter() - started, request.method, route)
    return response
