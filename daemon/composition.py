"""The composition root: the one place where the settings become what each part of the
process is given.

``compose(settings)`` runs once per process, right after the settings are loaded. It
parses every rule text once (taxonomy, severity rules, routing rules), turns the flat
``TRIAGED_*`` settings into each module's own typed configuration (auth policy, analyzer
configuration, queue options, fetch policy), and builds the process-wide resources that
modules use but must not create themselves (the low-priority CPU threads, the CPU worker
processes, the loop's reads-first priority).
Modules never see :class:`~daemon.shared.config.Settings`; adapters (``daemon/api``,
``daemon/worker``, the supervisor) receive a :class:`Components` and hand each module
its part.

Errors in rule texts are configuration errors (exit status 2), reported with the
variable at fault, like any malformed setting.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import attrs

from daemon.modules.analysis import (
    DEFAULT_SEVERITY_RULES,
    DEFAULT_TAXONOMY,
    AnalyzerConfig,
    AnalyzerSet,
    LlmConfig,
    Provider,
    SeverityRules,
    Taxonomy,
    parse_severity_rules,
    parse_taxonomy,
)
from daemon.modules.auth import AuthPolicy, ThrottlePolicy
from daemon.modules.cases import CaseWorkConfig, RoutingRules, parse_routing_rules
from daemon.modules.ingestion import EgressPolicy, FetchPolicy, PipelineConfig, egress_policy
from daemon.modules.notifications import DeliveryOptions, EscalationPolicy, parse_policy
from daemon.modules.retention import BatchLimits, Periods, RetentionConfig, purge_schedule
from daemon.modules.sources import SourcePolicy, SourcesConfig
from daemon.queue import InvalidSchedule, MaintenanceOptions, SchedulerOptions, WorkerOptions
from daemon.shared.cpu_processes import CpuProcesses
from daemon.shared.cpu_threads import CpuThreads, usable_cpus
from daemon.shared.errors import ConfigError
from daemon.shared.loop_priority import LoopPriority

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.modules.sources import SourceMetrics
    from daemon.shared.config import Settings


MAX_CPU_PROCESSES = 4  # by default: each worker process holds ~65 MB


def default_cpu_processes(usable: int) -> int:
    """CPU worker processes when not configured: one core fewer than the process may use,
    so the event loop keeps one while they compute (at least one, at most
    ``MAX_CPU_PROCESSES``). On two cores, two workers beside the loop and PostgreSQL held
    `/livez` p99 at ~15 ms while a backlog drained; one worker, at ~9 ms, and ingestion
    kept its rate (bench/README.md)."""
    return max(1, min(usable - 1, MAX_CPU_PROCESSES))


@attrs.frozen(kw_only=True)
class Components:
    """Everything a process is wired from, built once by :func:`compose`.

    - ``settings``: the validated settings (for the adapters' own options: HTTP, pool).
    - ``cpu``: the process's one pool of low-priority CPU threads, for work that releases
      the GIL (password hashing, hashing big contents), sized to the usable CPUs.
    - ``processes``: the process's CPU worker processes, for work that holds the GIL
      (extraction, normalization, heuristic analysis, feed parsing):
      ``TRIAGED_CPU_PROCESSES``, by default one fewer than the usable CPUs, 1 to 4
      (:func:`default_cpu_processes`); they start on first use, so a process that runs
      no step starts none.
    - ``priority``: HTTP reads before queue work on the process's event loop (the edge
      marks reads, the supervisor marks the poller and scheduler groups).
    - ``auth``: the authentication rules (its ``cpu`` set).
    - ``analysis``: the analyzers' configuration (taxonomy and rules parsed, its ``cpu``
      the ``processes``).
    - ``routing``: the rules that open cases.
    - ``worker``, ``maintenance``, ``scheduler``: the queue engine's options.
    - ``retention``: how long completed documents are kept.
    - ``egress``: where outbound requests for documents may go (None: anywhere the
      address policy allows).
    - ``fetch``: how document URLs are fetched (timeouts, size, redirects, the address
      policy and ``egress``).
    - ``cases``: case work (the resolutions allowed, the SLA a reopened case restarts
      its escalation ladder with).
    - ``purge``: the retention periods, the purge's schedule and batches, the audit
      checkpoint key.
    - ``escalation``: the escalation policy (what happens after a case's SLA deadline).
    - ``notifications``: how notification deliveries go out (the SSRF guard of ``fetch``
      with the delivery timeout, attempts, backoff).
    """

    settings: Settings
    cpu: CpuThreads = attrs.field(eq=False, repr=False)
    processes: CpuProcesses = attrs.field(eq=False, repr=False)
    priority: LoopPriority = attrs.field(eq=False, repr=False)
    auth: AuthPolicy
    analysis: AnalyzerConfig
    routing: RoutingRules
    worker: WorkerOptions
    maintenance: MaintenanceOptions
    scheduler: SchedulerOptions
    retention: timedelta
    egress: EgressPolicy | None
    fetch: FetchPolicy
    cases: CaseWorkConfig
    purge: RetentionConfig
    escalation: EscalationPolicy
    notifications: DeliveryOptions

    @property
    def taxonomy(self) -> Taxonomy:
        return self.analysis.taxonomy


def compose(
    settings: Settings,
    *,
    cpu: CpuThreads | None = None,
    processes: CpuProcesses | None = None,
) -> Components:
    """The components of a process configured by ``settings``.

    ``cpu``, ``processes``: CPU pools to share (tests building several processes' worth
    of components in one); by default each is built, sized to the usable CPUs (the
    processes one fewer). Their threads and processes start on first use.

    Raises:
        ConfigError: a rule text does not parse (one line per variable at fault).
    """
    taxonomy, severity_rules, routing = _parse_rules(settings)
    escalation = escalation_policy(settings)
    cpu = cpu if cpu is not None else CpuThreads(usable_cpus(), name="cpu")
    if processes is None:
        processes = CpuProcesses(settings.cpu_processes or default_cpu_processes(usable_cpus()))
    egress = egress_policy(settings.fetch_egress_networks)
    fetch = FetchPolicy(
        connect_timeout=settings.fetch_connect_timeout_seconds,
        total_timeout=settings.fetch_timeout_seconds,
        max_bytes=settings.max_document_bytes,
        max_redirects=settings.fetch_max_redirects,
        allow_private=settings.fetch_allow_private,
        allowed_networks=settings.fetch_allowed_networks,
        egress=egress,
    )
    return Components(
        settings=settings,
        cpu=cpu,
        processes=processes,
        priority=LoopPriority(),
        auth=auth_policy(settings, cpu=cpu),
        analysis=AnalyzerConfig(
            provider=Provider(settings.analyzer.value),
            taxonomy=taxonomy,
            severity_rules=severity_rules,
            llm=_llm_config_factory(settings),
            llm_model=settings.llm_model,
            cpu=processes,
        ),
        routing=routing,
        worker=WorkerOptions(
            lease_seconds=settings.queue_lease_seconds,
            poll_interval=settings.queue_poll_interval_seconds,
            listen=settings.queue_listen,
        ),
        maintenance=MaintenanceOptions(
            rescue_interval=settings.queue_rescue_interval_seconds,
            retain_completed_seconds=settings.queue_retain_completed_seconds,
            retain_failed_seconds=settings.queue_retain_failed_seconds,
        ),
        scheduler=SchedulerOptions(catch_up_seconds=settings.scheduler_catch_up_seconds),
        retention=timedelta(days=settings.document_retention_days),
        egress=egress,
        fetch=fetch,
        escalation=escalation,
        notifications=DeliveryOptions(
            fetch=attrs.evolve(
                fetch,
                total_timeout=settings.notification_timeout_seconds,
                connect_timeout=min(
                    settings.fetch_connect_timeout_seconds, settings.notification_timeout_seconds
                ),
            ),
            max_attempts=settings.notification_max_attempts,
            backoff_max_seconds=settings.notification_backoff_max_seconds,
        ),
        cases=CaseWorkConfig(resolutions=settings.case_resolutions, sla=routing.sla),
        purge=retention_config(settings),
    )


def retention_config(settings: Settings) -> RetentionConfig:
    """The retention periods, the purge's schedule and batches, the checkpoint key.

    Raises:
        ConfigError: the purge's time zone is unknown.
    """
    try:
        hour, minute = settings.retention_purge_time.split(":")
        schedule = purge_schedule(
            f"{int(minute)} {int(hour)} * * *", settings.retention_purge_timezone
        )
    except InvalidSchedule as exc:
        raise ConfigError([f"TRIAGED_RETENTION_PURGE_TIMEZONE: {exc}"]) from None
    key = settings.audit_checkpoint_key
    return RetentionConfig(
        periods=Periods(
            completed_documents=timedelta(days=settings.document_retention_days),
            failed_documents=timedelta(days=settings.retention_failed_documents_days),
            duplicate_documents=timedelta(days=settings.retention_duplicate_documents_days),
            resolved_cases=timedelta(days=settings.retention_resolved_cases_days),
            document_history=timedelta(days=settings.retention_document_history_days),
            audit_events=timedelta(days=settings.retention_audit_events_days),
        ),
        batch=BatchLimits(
            rows=settings.retention_batch_rows, seconds=settings.retention_batch_seconds
        ),
        schedule=schedule,
        checkpoint_key=None if key is None else key.get_secret_value().encode("utf-8"),
    )


def escalation_policy(settings: Settings) -> EscalationPolicy:
    """The escalation policy from its setting or its file (unset: no escalation).

    Raises:
        ConfigError: naming the variable at fault.
    """
    text, variable = settings.escalation_policy, "TRIAGED_ESCALATION_POLICY"
    path = settings.escalation_policy_file
    if path is not None:
        if text is not None:
            raise ConfigError(
                ["TRIAGED_ESCALATION_POLICY_FILE: set it or TRIAGED_ESCALATION_POLICY, not both"]
            )
        variable = "TRIAGED_ESCALATION_POLICY_FILE"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            raise ConfigError([f"{variable}: cannot read {path}: {exc}"]) from None
    if text is None:
        return EscalationPolicy()
    try:
        return parse_policy(text)
    except ValueError as exc:
        raise ConfigError([f"{variable}: {exc}"]) from None


def pipeline_config(components: Components, analyzers: AnalyzerSet | None = None) -> PipelineConfig:
    """The ingestion pipeline's configuration. ``analyzers``: the process's (the
    supervisor builds them once, to report their health); None: built here."""
    settings = components.settings
    return PipelineConfig(
        analyzers=analyzers if analyzers is not None else AnalyzerSet(components.analysis),
        cpu=components.cpu,
        processes=components.processes,
        taxonomy=components.taxonomy,
        routing=components.routing,
        fetch=components.fetch,
        chunk_chars=settings.analyzer_chunk_chars,
        max_chunks=settings.analyzer_max_chunks,
        max_attempts=settings.ingest_max_attempts,
        retention=components.retention,
        fetch_concurrency=settings.worker_concurrency,
    )


def sources_config(components: Components, metrics: SourceMetrics | None = None) -> SourcesConfig:
    """The sources' configuration: what source URLs may point at (the fetch address
    rules and egress allowlist), the base fetch policy, failures and backoff."""
    settings = components.settings
    fetch = components.fetch
    return SourcesConfig(
        policy=SourcePolicy(
            address=fetch.address_policy,
            egress=components.egress,
            directory_roots=settings.source_directory_roots,
        ),
        fetch=fetch,
        max_document_bytes=settings.max_document_bytes,
        max_attempts=settings.ingest_max_attempts,
        max_failures=settings.source_max_failures,
        backoff_base_seconds=settings.source_backoff_base_seconds,
        backoff_max_seconds=settings.source_backoff_max_seconds,
        metrics=metrics,
        cpu=components.cpu,
        processes=components.processes,
    )


def auth_policy(settings: Settings, *, cpu: CpuThreads | None = None) -> AuthPolicy:
    """The authentication rules the settings configure."""

    def throttle(free: int, lock: int) -> ThrottlePolicy:
        return ThrottlePolicy(
            free_failures=free,
            lock_failures=lock,
            base_delay=settings.auth_delay_base_seconds,
            lock_seconds=settings.auth_lock_seconds,
            window_seconds=settings.auth_failure_window_seconds,
        )

    return AuthPolicy(
        session_ttl_seconds=settings.auth_session_ttl_seconds,
        password_min_length=settings.auth_password_min_length,
        hash_time_cost=settings.auth_hash_time_cost,
        hash_memory_kib=settings.auth_hash_memory_kib,
        hash_parallelism=settings.auth_hash_parallelism,
        account_throttle=throttle(
            settings.auth_account_free_failures, settings.auth_account_lock_failures
        ),
        address_throttle=throttle(
            settings.auth_address_free_failures, settings.auth_address_lock_failures
        ),
        cpu=cpu,
    )


def _llm_config_factory(settings: Settings) -> Callable[[str], LlmConfig] | None:
    """The model server as a function of the model name (None: no server configured)."""
    if settings.llm_base_url is None:
        return None
    api_key = None if settings.llm_api_key is None else settings.llm_api_key.get_secret_value()

    def for_model(model: str) -> LlmConfig:
        return LlmConfig(
            base_url=settings.llm_base_url or "",
            model=model,
            api_key=api_key,
            connect_timeout=settings.llm_connect_timeout_seconds,
            total_timeout=settings.llm_timeout_seconds,
            temperature=settings.llm_temperature,
            max_concurrency=settings.llm_max_concurrency,
            max_calls_per_document=settings.llm_max_calls_per_document,
            breaker_failures=settings.llm_breaker_failures,
            breaker_probe_interval=settings.llm_breaker_probe_seconds,
        )

    return for_model


def _parse_rules(settings: Settings) -> tuple[Taxonomy, SeverityRules, RoutingRules]:
    """Each rule text parsed once; every problem named with its variable."""
    problems: list[str] = []
    taxonomy: Taxonomy | None = None  # the rules are checked against it once it parses
    severity_rules = DEFAULT_SEVERITY_RULES
    routing = RoutingRules()
    if settings.taxonomy is not None:
        try:
            taxonomy = parse_taxonomy(settings.taxonomy)
        except ValueError as exc:
            problems.append(f"TRIAGED_TAXONOMY: {exc}")
    else:
        taxonomy = DEFAULT_TAXONOMY
    if settings.severity_rules is not None:
        try:
            severity_rules = parse_severity_rules(settings.severity_rules, taxonomy=taxonomy)
        except ValueError as exc:
            problems.append(f"TRIAGED_SEVERITY_RULES: {exc}")
    if settings.routing_rules is not None:
        try:
            routing = parse_routing_rules(settings.routing_rules, taxonomy=taxonomy)
        except ValueError as exc:
            problems.append(f"TRIAGED_ROUTING_RULES: {exc}")
    if problems or taxonomy is None:
        raise ConfigError(problems)
    return taxonomy, severity_rules, routing


__all__ = [
    "Components",
    "auth_policy",
    "compose",
    "pipeline_config",
    "retention_config",
    "sources_config",
]
