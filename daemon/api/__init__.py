"""The HTTP adapter: a quart-trio app behind the ASGI edge (see :mod:`daemon.api.edge`)."""

from __future__ import annotations

from typing import Any

from quart_trio import QuartTrio

from daemon.api.context import _EXTENSION, ApiContext
from daemon.api.edge import Edge
from daemon.api.errors import register_error_handlers
from daemon.api.routes import health


def create_app(context: ApiContext) -> QuartTrio:
    """The Quart app with every route and error handler registered."""
    app = QuartTrio("triaged")
    app.config["MAX_CONTENT_LENGTH"] = context.settings.max_request_bytes
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.extensions[_EXTENSION] = context
    register_error_handlers(app)
    app.register_blueprint(health.blueprint)
    return app


def create_asgi(app: QuartTrio, context: ApiContext) -> Any:
    """The app wrapped in the edge middleware: what hypercorn serves."""
    return Edge(app, max_body_bytes=context.settings.max_request_bytes)


__all__ = ["ApiContext", "create_app", "create_asgi"]
