"""What the HTTP layer is given by the supervisor: settings, health state, the pool, the
intake writer, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from quart import current_app

from daemon.modules.auth import AuthPolicy
from daemon.shared.errors import DatabaseError
from daemon.shared.metrics import Metric, Registry

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.modules.ingestion import IntakeWriter
    from daemon.shared.config import Settings
    from daemon.shared.db.pool import Pool
    from daemon.shared.health import HealthState

_EXTENSION = "triaged"


@dataclass(frozen=True, kw_only=True)
class ApiContext:
    settings: Settings
    health: HealthState
    pool: Pool | None
    # The process's document intakes on ``pool`` (group commit); None: no intake here.
    intake_writer: IntakeWriter | None = None
    registry: Registry = field(default_factory=Registry)
    # Metrics read at scrape time from other parts of the process (the analyzers').
    metric_sources: tuple[Callable[[], list[Metric]], ...] = ()

    @property
    def db(self) -> Pool:
        """The pool; raises DatabaseError when this app runs without one."""
        if self.pool is None:
            raise DatabaseError("this server has no database")
        return self.pool

    @property
    def intake(self) -> IntakeWriter:
        """The intake writer; raises DatabaseError when this app runs without one."""
        if self.intake_writer is None:
            raise DatabaseError("this server has no database")
        return self.intake_writer

    @cached_property
    def auth_policy(self) -> AuthPolicy:
        return AuthPolicy.from_settings(self.settings)


def current_context() -> ApiContext:
    """The context of the app serving the current request."""
    context: ApiContext = current_app.extensions[_EXTENSION]
    return context
