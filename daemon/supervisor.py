"""The supervisor: one nursery, three groups, a deterministic start and drain.

::

    triaged serve
    └── supervisor nursery
        ├── signal watcher    SIGTERM/SIGINT: first drains, second cancels
        ├── watchdog          WATCHDOG=1 pings (under systemd with WatchdogSec)
        └── groups nursery
            ├── http          hypercorn serving the quart-trio app
            ├── poller        job fetchers and runners
            └── scheduler     schedules that enqueue jobs

Start: database (embedded when no URL) -> pool -> wait until the database answers ->
migrations (advisory lock) -> declared schedules synced (a process with a scheduler)
-> first admin (bootstrap variables or initial password file,
only when there is no user)
-> http -> poller -> scheduler -> ``READY=1``.

Drain on the first signal:
  1. readiness answers 503, ``STOPPING=1``;
  2. the listener stays open for the pre-stop delay, then closes; in-flight requests
     finish until the http grace deadline, idle keep-alive connections are closed;
  3. scheduler and poller stop taking work; running jobs finish until the job grace
     deadline; at a deadline the group is cancelled (its jobs are released);
  4. pool closed, embedded database stopped.

Exit status: 0 after a clean drain (jobs released at the job grace deadline count as
clean: they lose nothing and run again); 1 when the http grace deadline cut off requests,
a group crashed or start-up failed; 128+n when a second signal n forced the stop (2, bad
configuration, is decided before the supervisor exists). A signal during start-up
abandons the start (nothing is in flight before ``READY=1``) and stops cleanly.
"""

from __future__ import annotations

import enum
import gc
import logging
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from daemon.api import ApiContext, create_app, create_asgi
from daemon.api.server import HttpService
from daemon.modules.analysis import AnalyzerSet
from daemon.modules.audit import checkpoint_key_warning
from daemon.modules.auth import InvalidAccountData, bootstrap_admin, initial_admin
from daemon.modules.ingestion import IntakeWriter, note_configured_url
from daemon.queue import QueueMetrics, sync_declared_schedules
from daemon.shared.db import migrate
from daemon.shared.db.database import database_url
from daemon.shared.db.pool import Pool, open_pool
from daemon.shared.errors import ConfigError, DaemonError, DatabaseError
from daemon.shared.exit_status import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from daemon.shared.health import HealthState
from daemon.shared.loop_lag import monitor_loop_lag
from daemon.shared.metrics import Metric, Registry
from daemon.shared.systemd_notify import Notifier
from daemon.worker.groups import poller_group, scheduler_group
from daemon.worker.housekeeping import declared_schedules

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from daemon.composition import Components
    from daemon.shared.config import SystemdEnvironment
    from daemon.shared.loop_priority import LoopPriority
    from daemon.shared.service import Service

log = logging.getLogger("triaged.supervisor")

QUEUE_POOL_SIZE = 4  # connections for the queue's own statements (see _open_queue_pool)
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Role(enum.Enum):
    """Which groups a process runs."""

    SERVE = ("http", "poller", "scheduler")
    API = ("http",)
    WORKER = ("poller", "scheduler")


@dataclass
class _Group:
    service: Service
    stopping: trio.Event  # set by the supervisor when the drain begins
    # the queue's groups: their tasks step aside for HTTP reads (None: the http group)
    background: LoopPriority | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.background is not None:
            self.background.background()
        try:
            with self.scope:
                await self.service.run(task_status=task_status)
        finally:
            self.done.set()
        if not self.stopping.is_set():
            # A group that ends on its own is a fault: the whole process must restart.
            raise DaemonError(f"the {self.service.name} group stopped unexpectedly")


class Supervisor:
    """Runs the groups of one ``Role`` from start to exit. Use once."""

    def __init__(self, components: Components, role: Role, systemd: SystemdEnvironment) -> None:
        self.components = components
        self.settings = components.settings
        self.role = role
        self.notifier = Notifier(systemd)
        self.health = HealthState(expected_schema_version=migrate.latest_version())
        self.metrics = Registry()
        self.queue_metrics = QueueMetrics(self.metrics)
        self._draining = trio.Event()
        self._everything = trio.CancelScope()
        self._starting = True
        self._forced_by_signal: int | None = None
        self._deadline_missed = False
        self._failed = False
        self._bad_config = False
        self.analyzers: AnalyzerSet | None = None
        self._first_login_hint: str | None = None

    async def run(self) -> int:
        """Run until drained; return the exit status."""
        # Entered first: until then, SIGTERM would kill the process with no cleanup.
        with trio.open_signal_receiver(*_HANDLED_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals, signals)
                nursery.start_soon(monitor_loop_lag, self.metrics)
                await nursery.start(self.notifier.run_watchdog)
                with self._everything:
                    try:
                        await self._lifecycle()
                    except Exception as exc:
                        self._failed = True
                        self._bad_config = _config_error(exc)
                        _log_failure(exc)
                nursery.cancel_scope.cancel()
        self.notifier.close()
        return self._exit_status()

    def _exit_status(self) -> int:
        if self._forced_by_signal is not None:
            return 128 + self._forced_by_signal
        if self._bad_config:
            return EXIT_CONFIG
        if self._failed or self._deadline_missed:
            return EXIT_FAILURE
        return EXIT_OK

    async def _watch_signals(self, signals: trio.abc.AsyncIterator[int]) -> None:
        # Does nothing slow: identical pending signals are coalesced by the OS.
        async for signum in signals:
            name = signal.Signals(signum).name
            if not self._draining.is_set():
                # Readiness answers 503 from this pass of the loop on, not from the drain's
                # first step a pass or two later: a probe or a new client may be there now.
                self.health.draining = True
                self._draining.set()
                log.info(
                    "%s received: draining",
                    name,
                    extra={"action": "supervisor.drain", "signal": name},
                )
                if self._starting:
                    # Nothing is in flight before READY: abandon the start, close cleanly.
                    self._everything.cancel()
            else:
                log.warning(
                    "%s received again: stopping now",
                    name,
                    extra={"action": "supervisor.force", "signal": name},
                )
                self._forced_by_signal = signum
                self._everything.cancel()

    async def _lifecycle(self) -> None:
        # Resources are entered outermost and groups inside them, so that they close in
        # reverse: groups first, then the pool, then the embedded database.
        async with AsyncExitStack() as resources:
            await self.notifier.notify(STATUS="starting")
            unset_key = checkpoint_key_warning(self.components.purge.checkpoint_key)
            if unset_key:
                log.warning(unset_key, extra={"action": "audit.checkpoint_key_unset"})
            url, pool = await self._open_database(resources)
            queue_pool = await self._open_queue_pool(resources, url)
            analyzers = await self._open_analyzers(resources)
            groups: list[_Group] = []
            async with trio.open_nursery() as group_nursery:
                for service in self._services(url, pool, queue_pool, analyzers):
                    background = None if service.name == "http" else self.components.priority
                    group = _Group(service, self._draining, background)
                    await group_nursery.start(group.run)
                    groups.append(group)
                # Everything built at start lives until exit: take it out of the garbage
                # collector's sight, so its full passes scan only what requests and jobs
                # allocate (a full pass over the start-up heap took ~35 ms, a pause every
                # request in flight would feel).
                gc.collect()
                gc.freeze()
                self.health.started = True
                self._starting = False
                await self.notifier.notify(READY=1, STATUS=f"{self.role.name.lower()}: running")
                log.info(
                    "ready",
                    extra={
                        "action": "supervisor.ready",
                        "groups": [g.service.name for g in groups],
                    },
                )
                if self._first_login_hint:  # the last line a first `make run` shows
                    log.warning(
                        "first start: %s",
                        self._first_login_hint,
                        extra={"action": "auth.first_login"},
                    )
                await self._draining.wait()
                await self._drain(groups)
            log.info("groups stopped; closing resources", extra={"action": "supervisor.close"})

    async def _open_database(self, resources: AsyncExitStack) -> tuple[str, Pool]:
        settings = self.settings
        url = await resources.enter_async_context(database_url(settings))
        pool = await resources.enter_async_context(
            open_pool(
                url,
                min_size=settings.db_pool_min_size,
                max_size=settings.db_pool_max_size,
                acquire_timeout=settings.db_acquire_timeout_seconds,
                max_lifetime=settings.db_max_lifetime_seconds,
                connect_timeout=settings.db_connect_timeout_seconds,
            )
        )
        await _wait_for_database(pool, settings.startup_timeout_seconds)
        applied = await migrate.apply(pool)
        if "scheduler" in self.role.value:
            # The modules' periodic work, as declared in this version of the code.
            await sync_declared_schedules(pool, declared_schedules(self.components))
        policy = self.components.auth
        password = settings.bootstrap_admin_password
        try:
            await bootstrap_admin(
                pool,
                settings.bootstrap_admin_email,
                None if password is None else password.get_secret_value(),
                policy,
            )
        except InvalidAccountData as exc:
            raise ConfigError([f"TRIAGED_BOOTSTRAP_ADMIN_*: {exc.message}"]) from None
        try:
            created = await initial_admin(pool, settings.initial_admin_password_file, policy)
        except OSError as exc:
            raise ConfigError(
                [f"TRIAGED_INITIAL_ADMIN_PASSWORD_FILE: cannot write it: {exc.strerror or exc}"]
            ) from None
        if created is not None:
            self._first_login_hint = (
                f"log in as {created.email} with the password in "
                f"{settings.initial_admin_password_file} (POST /api/v1/auth/login)"
            )
        if applied:
            log.info(
                "applied %d migration(s)",
                len(applied),
                extra={"action": "migrate.done", "versions": [m.version for m in applied]},
            )
        return url, pool

    async def _open_queue_pool(self, resources: AsyncExitStack, url: str) -> Pool | None:
        """A small pool of its own for the queue's bookkeeping (claims, completions, lease
        renewals, maintenance, schedules), so handlers and HTTP requests holding every
        connection of the main pool can never starve a lease renewal."""
        if self.role is Role.API:
            return None
        settings = self.settings
        return await resources.enter_async_context(
            open_pool(
                url,
                min_size=1,
                max_size=QUEUE_POOL_SIZE,
                acquire_timeout=settings.db_acquire_timeout_seconds,
                max_lifetime=settings.db_max_lifetime_seconds,
                connect_timeout=settings.db_connect_timeout_seconds,
                name="queue",
            )
        )

    async def _open_analyzers(self, resources: AsyncExitStack) -> AnalyzerSet | None:
        """The document analyzers of a process that runs the pipeline (closed after the
        groups stop); their health goes to /readyz, their counters to /metrics."""
        if "poller" not in self.role.value:
            return None
        analyzers = AnalyzerSet(self.components.analysis)
        note_configured_url(
            self.components.egress,
            self.settings.llm_base_url,
            "the model server (TRIAGED_LLM_BASE_URL)",
        )
        resources.push_async_callback(analyzers.aclose)
        self.health.analyzer_status = analyzers.status
        self.analyzers = analyzers
        return analyzers

    def _services(
        self, url: str, pool: Pool, queue_pool: Pool | None, analyzers: AnalyzerSet | None
    ) -> list[Service]:
        components = self.components
        bookkeeping = queue_pool or pool
        factories: dict[str, Callable[[], Service]] = {
            "http": lambda: self._http_service(pool),
            "poller": lambda: poller_group(
                components, bookkeeping, url, self.queue_metrics, pool, analyzers
            ),
            "scheduler": lambda: scheduler_group(components, bookkeeping, self.queue_metrics),
        }
        return [factories[name]() for name in self.role.value]

    def _http_service(self, pool: Pool) -> HttpService:
        context = ApiContext(
            settings=self.settings,
            components=self.components,
            health=self.health,
            pool=pool,
            intake_writer=IntakeWriter(pool),
            registry=self.metrics,
            metric_sources=(self._analyzer_metrics,),
        )
        return HttpService(create_asgi(create_app(context), context), self.settings)

    def _analyzer_metrics(self) -> list[Metric]:
        """The analyzers' counters for /metrics (none in a process without them)."""
        if self.analyzers is None:
            return []
        return self.analyzers.metrics()

    async def _drain(self, groups: Sequence[_Group]) -> None:
        # Readiness already answers 503: the signal watcher set it with the drain event.
        settings = self.settings
        await self.notifier.notify(STOPPING=1, STATUS="draining")
        by_name = {g.service.name: g for g in groups}
        http = by_name.get("http")
        if http is not None:
            # Readiness already answers 503; keep the listener open so probes see it.
            await trio.sleep(settings.pre_stop_delay_seconds)
            await self._stop_within([http], settings.http_grace_seconds, lossless=False)
        workers = [by_name[name] for name in ("scheduler", "poller") if name in by_name]
        await self._stop_within(workers, settings.job_grace_seconds, lossless=True)

    async def _stop_within(self, groups: Sequence[_Group], grace: float, *, lossless: bool) -> None:
        """Ask ``groups`` to stop; cancel those still running after ``grace`` seconds.

        ``lossless``: cancelling these groups loses nothing (the worker releases its jobs
        back to the queue), so it does not make the exit status 1; cutting off HTTP
        requests does (their clients get no response).
        """
        for group in groups:
            group.service.request_stop()
        with trio.move_on_after(grace):
            for group in groups:
                await group.done.wait()
        for group in groups:
            if not group.done.is_set():
                self._deadline_missed = self._deadline_missed or not lossless
                log.warning(
                    "%s group still busy after %.1fs: cancelling it",
                    group.service.name,
                    grace,
                    extra={"action": "supervisor.deadline", "group": group.service.name},
                )
                group.scope.cancel()
        for group in groups:
            await group.done.wait()


async def _wait_for_database(pool: Pool, timeout: float) -> None:
    """Return once the database answers; retry with backoff up to ``timeout`` seconds.

    Raises:
        DatabaseError: the database did not answer in time.
    """
    delay = 0.1
    last_error: DatabaseError | None = None
    with trio.move_on_after(timeout):
        while True:
            try:
                await pool.check()
                return
            except DatabaseError as exc:
                if last_error is None:
                    log.warning(
                        "waiting for the database: %s", exc.message, extra={"action": "db.wait"}
                    )
                last_error = exc
            await trio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise DatabaseError(
        f"the database did not answer within {timeout:g}s"
        + (f": {last_error.message}" if last_error else "")
    )


def _config_error(exc: Exception) -> bool:
    """Whether start-up failed on a configuration error (exit status 2)."""
    errors = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    return any(isinstance(error, ConfigError) for error in _flatten(errors))


def _log_failure(exc: Exception) -> None:
    errors = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    for error in _flatten(errors):
        if isinstance(error, DaemonError):
            log.error("%s", error.message, extra={"action": "supervisor.failed"})
        else:
            log.critical(
                "crashed: %r", error, exc_info=error, extra={"action": "supervisor.crashed"}
            )


def _flatten(errors: Sequence[BaseException]) -> list[BaseException]:
    flat: list[BaseException] = []
    for error in errors:
        if isinstance(error, BaseExceptionGroup):
            flat.extend(_flatten(error.exceptions))
        else:
            flat.append(error)
    return flat
