"""The HTTP adapter: a quart-trio app behind the ASGI edge (see :mod:`daemon.api.edge`)."""

from __future__ import annotations

from typing import Any

from quart_trio import QuartTrio

from daemon.api.access import check_declarations
from daemon.api.asgi_connection import Connection
from daemon.api.authn import authorize_request, forget_changed_credentials
from daemon.api.body_limits import BodyBudget
from daemon.api.context import _EXTENSION, ApiContext
from daemon.api.cors import CorsPolicy
from daemon.api.edge import Edge
from daemon.api.errors import register_error_handlers
from daemon.api.http_metrics import record_request, start_timer
from daemon.api.path_ids import BigintIdConverter
from daemon.api.proxies import parse_networks
from daemon.api.routes import (
    api_keys,
    audit,
    auth,
    cases,
    docs,
    documents,
    exports,
    health,
    metrics,
    notification_channels,
    retention,
    source_webhooks,
    sources,
    users,
)
from daemon.api.uploads import Request

BLUEPRINTS = [
    health.blueprint,
    metrics.blueprint,
    docs.blueprint,
    auth.blueprint,
    users.blueprint,
    api_keys.blueprint,
    audit.blueprint,
    documents.blueprint,
    cases.blueprint,
    sources.blueprint,
    source_webhooks.blueprint,
    exports.blueprint,
    retention.blueprint,
    notification_channels.blueprint,
]


class UndeclaredRoutes(RuntimeError):
    """Routes without an access declaration (see :mod:`daemon.api.access`)."""


def create_app(context: ApiContext, *, extra_blueprints: tuple[Any, ...] = ()) -> QuartTrio:
    """The Quart app with every route, hook and error handler registered.

    Raises:
        UndeclaredRoutes: a route has no access declaration. Never in a release: the
            test suite builds this app and fails first.
    """
    app = QuartTrio("triaged", static_folder=None)
    app.request_class = Request  # uploads parsed in memory (see daemon/api/uploads.py)
    app.asgi_http_class = Connection  # an in-memory body in one message
    app.url_map.converters["int"] = BigintIdConverter  # before any route is added
    app.config["MAX_CONTENT_LENGTH"] = context.settings.max_request_bytes
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.extensions[_EXTENSION] = context
    register_error_handlers(app)
    app.before_request(start_timer)
    app.before_request(authorize_request)
    app.before_websocket(authorize_request)  # none today; a future one is checked too
    app.after_request(record_request)
    app.after_request(forget_changed_credentials)
    for blueprint in [*BLUEPRINTS, *extra_blueprints]:
        app.register_blueprint(blueprint)
    missing = check_declarations(app)
    if missing:
        raise UndeclaredRoutes("routes without an access declaration: " + "; ".join(missing))
    return app


def create_asgi(app: QuartTrio, context: ApiContext) -> Any:
    """The app wrapped in the edge middleware: what hypercorn serves."""
    settings = context.settings
    return Edge(
        app,
        max_body_bytes=settings.max_request_bytes,
        body_timeout=settings.http_body_timeout_seconds,
        body_budget=BodyBudget(max(settings.http_body_bytes_in_flight, settings.max_request_bytes)),
        cors=CorsPolicy.of(settings.cors_allowed_origins),
        trusted_proxies=parse_networks(settings.http_trusted_proxies),
        priority=context.parts.priority,
    )


__all__ = ["ApiContext", "UndeclaredRoutes", "create_app", "create_asgi"]
