"""What the HTTP layer is given by the supervisor: settings and the components built
from them, health state, the pool, the intake writer, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from quart import current_app

from daemon.composition import Components, compose
from daemon.modules.auth import CredentialCache
from daemon.shared.errors import DatabaseError
from daemon.shared.metrics import Metric, Registry

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.modules.analysis import AnalyzerConfig
    from daemon.modules.auth import AuthPolicy
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
    # The process's components (the supervisor passes its own); None: composed here
    # from ``settings`` (an app built alone, as in tests).
    components: Components | None = None

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
    def parts(self) -> Components:
        """The components this app uses (given, or composed once from the settings)."""
        return self.components if self.components is not None else compose(self.settings)

    @cached_property
    def credentials(self) -> CredentialCache | None:
        """This app's cache of token lookups (None without a database); off when
        ``queue_listen`` is (a pooler that drops LISTEN could not invalidate it)."""
        if self.pool is None:
            return None
        return CredentialCache(self.pool.connect_apart, enabled=self.settings.queue_listen)

    @property
    def auth_policy(self) -> AuthPolicy:
        return self.parts.auth

    @property
    def analysis(self) -> AnalyzerConfig:
        return self.parts.analysis


def current_context() -> ApiContext:
    """The context of the app serving the current request."""
    context: ApiContext = current_app.extensions[_EXTENSION]
    return context
