"""What the HTTP layer is given by the supervisor: settings, health state, the pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from quart import current_app

if TYPE_CHECKING:
    from daemon.shared.config import Settings
    from daemon.shared.db.pool import Pool
    from daemon.shared.health import HealthState

_EXTENSION = "triaged"


@dataclass(frozen=True, kw_only=True)
class ApiContext:
    settings: Settings
    health: HealthState
    pool: Pool | None


def current_context() -> ApiContext:
    """The context of the app serving the current request."""
    context: ApiContext = current_app.extensions[_EXTENSION]
    return context
