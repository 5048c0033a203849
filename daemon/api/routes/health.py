"""``/livez`` and ``/readyz``: probes for systemd, Docker, load balancers and Kubernetes."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from daemon.api.access import Reply, public
from daemon.api.context import current_context
from daemon.api.schemas.health import Liveness, Readiness
from daemon.shared.health import check_readiness

blueprint = Blueprint("health", __name__)


@blueprint.get("/livez")
@public(replies={200: Liveness}, database=False)
async def livez() -> Response:
    """200 while the process and its event loop run; never looks at dependencies."""
    return jsonify({"status": "ok"})


# Its failures are its own 503 (a Readiness body), never a problem: it looks at the
# database without needing it.
@blueprint.get("/readyz")
@public(
    replies={200: Readiness, 503: Reply(model=Readiness, description="Not ready")},
    database=False,
)
async def readyz() -> tuple[Response, int]:
    """200 when ready for work, else 503 with the failing checks."""
    context = current_context()
    readiness = await check_readiness(context.health, context.pool)
    body = {"status": "ready" if readiness.ready else "unavailable", "checks": readiness.checks}
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if readiness.ready else 503
