"""Settings: the one typed, frozen configuration object of triaged.

Built once at start-up by :func:`load_settings` from ``TRIAGED_*`` environment variables
and, optionally, an env file named by ``TRIAGED_ENV_FILE``; then passed down explicitly.
Nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from daemon.shared.errors import ConfigError

ENV_PREFIX = "TRIAGED_"
ENV_FILE_VARIABLE = "TRIAGED_ENV_FILE"

DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8080
DEFAULT_HTTP_GRACE_SECONDS = 10.0
DEFAULT_JOB_GRACE_SECONDS = 15.0
DEFAULT_PRE_STOP_DELAY_SECONDS = 0.0
DEFAULT_KEEP_ALIVE_SECONDS = 5.0
DEFAULT_WORKER_CONCURRENCY = 10
DEFAULT_MAX_REQUEST_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
INGEST_STEPS = ("fetch", "hash", "extract", "normalize", "analyze", "route", "complete")
DEFAULT_SESSION_TTL_SECONDS = 12 * 3600.0
DEFAULT_PASSWORD_MIN_LENGTH = 12
# argon2-cffi's RFC 9106 "low memory" profile (its PasswordHasher defaults).
DEFAULT_ARGON2_TIME_COST = 3
DEFAULT_ARGON2_MEMORY_KIB = 64 * 1024
DEFAULT_ARGON2_PARALLELISM = 4

Seconds = Annotated[float, Field(ge=0, le=3600)]
# An egress allowlist host name: IDNA-encoded labels, the last not a number (127.1 is an
# address in a legacy spelling, not a name).
_EGRESS_HOST = re.compile(r"(?:[a-z0-9_-]+\.)*(?![0-9]+$|0x[0-9a-f]*$)[a-z0-9_-]+")
# A list given as one comma-separated variable (``a, b``); empty or unset: no items.
CommaList = Annotated[tuple[str, ...], NoDecode]


class LogFormat(StrEnum):
    AUTO = "auto"  # JSON lines unless stdout is a terminal
    JSON = "json"
    TEXT = "text"


class AnalyzerName(StrEnum):
    HEURISTIC = "heuristic"  # built in, deterministic, no model server
    OPENAI = "openai"  # any OpenAI-compatible chat completions server


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class Settings(BaseSettings):
    """Every setting of triaged. Field ``x`` is read from ``TRIAGED_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL. Unset: start an embedded PostgreSQL under data_dir.",
    )
    data_dir: Path = Field(
        default=Path("triaged-data"),
        description="Directory for state: the embedded PostgreSQL cluster and stored files.",
    )
    http_host: str = Field(
        default=DEFAULT_HTTP_HOST, min_length=1, description="Address the HTTP API listens on."
    )
    http_port: int = Field(
        default=DEFAULT_HTTP_PORT, ge=1, le=65535, description="Port the HTTP API listens on."
    )
    http_grace_seconds: Seconds = Field(
        default=DEFAULT_HTTP_GRACE_SECONDS,
        description="On shutdown, how long in-flight HTTP requests may still run.",
    )
    job_grace_seconds: Seconds = Field(
        default=DEFAULT_JOB_GRACE_SECONDS,
        description="On shutdown, how long running jobs may still run before being released.",
    )
    pre_stop_delay_seconds: Seconds = Field(
        default=DEFAULT_PRE_STOP_DELAY_SECONDS,
        description="On shutdown, how long /readyz answers 503 before the listener closes.",
    )
    http_keep_alive_seconds: float = Field(
        default=DEFAULT_KEEP_ALIVE_SECONDS,
        gt=0,
        le=3600,
        description="Idle keep-alive HTTP connections are closed after this long.",
    )
    max_request_bytes: int = Field(
        default=DEFAULT_MAX_REQUEST_BYTES,
        ge=1024,
        description="Largest request body accepted; larger ones get 413.",
    )
    http_trusted_proxies: CommaList = Field(
        default=(),
        description="Reverse proxies (addresses or networks, comma-separated) whose "
        "X-Forwarded-For is believed; empty: the TCP peer is the client address.",
    )
    cors_allowed_origins: CommaList = Field(
        default=(),
        description="Browser origins allowed to call the API (comma-separated, e.g. "
        "https://ops.example.org); empty: CORS off.",
    )
    metrics_public: bool = Field(
        default=True,
        description="Serve /metrics without credentials; false: it needs a token or API key.",
    )
    log_level: LogLevel = Field(default=LogLevel.INFO, description="DEBUG, INFO, WARNING or ERROR.")
    log_format: LogFormat = Field(
        default=LogFormat.AUTO,
        description="json, text, or auto (text on a terminal, JSON lines otherwise).",
    )
    worker_concurrency: int = Field(
        default=DEFAULT_WORKER_CONCURRENCY,
        ge=1,
        le=1000,
        description="Jobs this process runs at once (default for queues without their own).",
    )
    db_pool_min_size: int = Field(
        default=1, ge=0, le=100, description="Database connections kept open when idle."
    )
    db_pool_max_size: int = Field(
        default=10, ge=1, le=500, description="Most database connections this process opens."
    )
    db_acquire_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="How long a caller waits for a free database connection.",
    )
    db_max_lifetime_seconds: float = Field(
        default=3600.0, gt=0, description="Database connections are replaced after this age."
    )
    db_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=600, description="Timeout of one attempt to connect."
    )
    queue_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="Lease of a running job, renewed every third of it; a dead worker's "
        "jobs return this long after its last renewal.",
    )
    queue_poll_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        le=300,
        description="Fetch at least this often without a notification (delayed jobs, "
        "polling-only mode).",
    )
    queue_listen: bool = Field(
        default=True,
        description="Wake workers by LISTEN/NOTIFY; false for poolers that drop LISTEN "
        "(polling only).",
    )
    queue_rescue_interval_seconds: float = Field(
        default=2.0, gt=0, le=300, description="How often expired leases are looked for."
    )
    queue_retain_completed_seconds: float = Field(
        default=86_400.0,
        ge=0,
        description="Completed jobs are deleted after this long (unless their queue says "
        "otherwise).",
    )
    queue_retain_failed_seconds: float = Field(
        default=14 * 86_400.0,
        ge=0,
        description="Failed and cancelled jobs are deleted after this long (unless their "
        "queue says otherwise).",
    )
    scheduler_catch_up_seconds: float = Field(
        default=300.0,
        ge=0,
        le=30 * 86_400,
        description="After downtime, missed schedule slots younger than this still fire "
        "(once each); older ones are skipped and logged.",
    )
    startup_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0,
        description="At start, how long to wait for the database before giving up (exit 1).",
    )
    auth_session_ttl_seconds: float = Field(
        default=DEFAULT_SESSION_TTL_SECONDS,
        ge=60,
        le=90 * 86_400,
        description="Login sessions (bearer tokens) expire this long after login.",
    )
    auth_password_min_length: int = Field(
        default=DEFAULT_PASSWORD_MIN_LENGTH,
        ge=8,
        le=256,
        description="Shortest password accepted (characters).",
    )
    auth_hash_time_cost: int = Field(
        default=DEFAULT_ARGON2_TIME_COST,
        ge=1,
        le=20,
        description="argon2id iterations; hashes made with other parameters are upgraded "
        "at the next login.",
    )
    auth_hash_memory_kib: int = Field(
        default=DEFAULT_ARGON2_MEMORY_KIB,
        ge=8 * 1024,
        le=4 * 1024 * 1024,
        description="argon2id memory per hash, in KiB.",
    )
    auth_hash_parallelism: int = Field(
        default=DEFAULT_ARGON2_PARALLELISM,
        ge=1,
        le=64,
        description="argon2id lanes (threads) per hash.",
    )
    auth_account_free_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Failed logins for one email before each further attempt is delayed.",
    )
    auth_account_lock_failures: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Failed logins for one email that lock it for auth_lock_seconds.",
    )
    auth_address_free_failures: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Failed logins from one client address before each further attempt is delayed.",
    )
    auth_address_lock_failures: int = Field(
        default=50,
        ge=1,
        le=100_000,
        description="Failed logins from one client address that lock it for auth_lock_seconds.",
    )
    auth_delay_base_seconds: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="First delay after the free failures; doubles with each further failure.",
    )
    auth_lock_seconds: float = Field(
        default=900.0,
        ge=1,
        le=86_400,
        description="How long a locked account or address is refused (Retry-After).",
    )
    auth_failure_window_seconds: float = Field(
        default=900.0,
        ge=1,
        le=86_400,
        description="Failure counters start afresh after this long without a failure.",
    )
    bootstrap_admin_email: str | None = Field(
        default=None,
        description="With bootstrap_admin_password: the admin created at start when there "
        "are no users yet.",
    )
    bootstrap_admin_password: SecretStr | None = Field(
        default=None,
        description="Password of the bootstrap admin (a secret: never logged or shown).",
    )
    initial_admin_password_file: Path | None = Field(
        default=None,
        description="With no user at all: create admin@triaged.localhost with a random "
        "password written to this file (mode 0600). make run sets it.",
    )
    max_document_bytes: int = Field(
        default=DEFAULT_MAX_DOCUMENT_BYTES,
        ge=1,
        description="Largest document accepted (upload, posted content, fetched URL); larger "
        "ones get 413 (or fail, when fetched).",
    )
    ingest_concurrency: Annotated[dict[str, int], NoDecode] = Field(
        default={},
        description="Jobs of each pipeline step this process runs at once, as "
        "step=n pairs (fetch, hash, extract, normalize, analyze, route, complete); "
        "steps not named: twice ingest_batch_size (worker_concurrency for an analysis "
        "by a model server, whose documents run alone).",
    )
    ingest_batch_size: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="Most jobs of a pipeline step run together, in one transaction "
        "for all their documents (1: each document alone).",
    )
    ingest_max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Attempts of a pipeline step on transient errors before the document fails.",
    )
    fetch_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="Total time a document URL fetch may take."
    )
    fetch_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=600, description="Time to connect to a document URL's server."
    )
    fetch_max_redirects: int = Field(
        default=3, ge=0, le=20, description="Redirects followed when fetching a document URL."
    )
    fetch_allow_private: bool = Field(
        default=False,
        description="Allow fetching document URLs on loopback, link-local and private "
        "addresses (SSRF protection off).",
    )
    fetch_allowed_networks: CommaList = Field(
        default=(),
        description="Networks document URLs may be fetched from even though private "
        "(comma-separated CIDRs).",
    )
    fetch_egress_networks: CommaList = Field(
        default=(),
        description="Egress allowlist: when set, outbound requests for documents go only to "
        "these networks (CIDRs) and host names (comma-separated); any other host is refused "
        "before a DNS query or connection. Narrows the SSRF guard, never widens it. Empty: "
        "no allowlist.",
    )
    analyzer: AnalyzerName = Field(
        default=AnalyzerName.HEURISTIC,
        description="The analyzer provider: heuristic (built in) or openai (any "
        "OpenAI-compatible server: vLLM, Ollama, llama.cpp, LocalAI).",
    )
    llm_base_url: str | None = Field(
        default=None,
        description="With analyzer=openai: the server's base URL, e.g. "
        "http://127.0.0.1:8000/v1 (the path before /chat/completions).",
    )
    llm_model: str | None = Field(
        default=None, max_length=200, description="With analyzer=openai: the model name."
    )
    llm_api_key: SecretStr | None = Field(
        default=None, description="Bearer key for the model server (a secret); unset: none."
    )
    llm_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=600, description="Time to connect to the model server."
    )
    llm_timeout_seconds: float = Field(
        default=120.0, gt=0, le=3600, description="Total time one model call may take."
    )
    llm_temperature: float = Field(
        default=0.0, ge=0, le=2, description="Sampling temperature of model calls."
    )
    llm_max_concurrency: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="Model calls in flight at once in this process (all documents together).",
    )
    llm_max_calls_per_document: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="Most model calls for one document (chunks, repairs, the merged summary).",
    )
    llm_breaker_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Consecutive failed model calls that open the circuit breaker (analysis "
        "jobs then wait instead of calling).",
    )
    llm_breaker_probe_seconds: float = Field(
        default=2.0,
        gt=0,
        le=600,
        description="While the breaker is open, how often one call probes the server.",
    )
    taxonomy: str | None = Field(
        default=None,
        description='Categories and their keywords as JSON, e.g. {"billing": ["invoice", '
        '"refund*"]}; unset: the built-in taxonomy. "other" is always added.',
    )
    severity_rules: str | None = Field(
        default=None,
        description="Severity rules as JSON (keywords -> minimum severity, category "
        "defaults); unset: the built-in rules.",
    )
    routing_rules: str | None = Field(
        default=None,
        description="When a case opens, its SLA per severity, assignees and tags, as JSON; "
        "unset: cases for high and critical, and for security, legal and privacy.",
    )
    analyzer_chunk_chars: int = Field(
        default=8000,
        ge=200,
        le=1_000_000,
        description="Longest piece of text given to the analyzer at once; longer texts "
        "are chunked.",
    )
    analyzer_max_chunks: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="Most chunks analysed per document; the rest is left out (the "
        "analysis says truncated).",
    )
    document_retention_days: float = Field(
        default=365.0,
        gt=0,
        le=36_500,
        description="Completed documents are kept this long (retain_until).",
    )
    # Limits on request bodies (docs/security.md).
    http_body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A request body must have arrived whole this long after the request "
        "started; slower ones get 408.",
    )
    http_body_bytes_in_flight: int = Field(
        default=192 * 1024 * 1024,
        ge=1024,
        description="Bytes of request bodies held at once by the process (at least one "
        "body of TRIAGED_MAX_REQUEST_BYTES); a body that does not fit gets 503 with "
        "Retry-After.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "http_trusted_proxies",
        "cors_allowed_origins",
        "fetch_allowed_networks",
        "fetch_egress_networks",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("http_trusted_proxies", "fetch_allowed_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: {item!r}") from None
        return value

    @field_validator("fetch_egress_networks")
    @classmethod
    def _egress_entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # The rule of EgressPolicy.parse (a test keeps the two equal): a CIDR, an IP
        # address (IPv6 may be in brackets) or a host name that does not end in a number.
        for item in value:
            text = item.strip().lower()
            text = text[1:-1] if text[:1] == "[" and text[-1:] == "]" else text.removesuffix(".")
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                if len(text) > 253 or not _EGRESS_HOST.fullmatch(text):
                    raise ValueError(
                        f"not a CIDR, an IP address or a host name (ASCII, IDNA-encoded): {item!r}"
                    ) from None
        return value

    @field_validator("ingest_concurrency", mode="before")
    @classmethod
    def _step_numbers(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs: dict[str, Any] = {}
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            step, sep, number = item.partition("=")
            if not sep:
                raise ValueError(f"expected step=n pairs, got {item!r}")
            pairs[step.strip()] = number.strip()
        return pairs

    @field_validator("ingest_concurrency")
    @classmethod
    def _known_steps(cls, value: dict[str, int]) -> dict[str, int]:
        for step, number in value.items():
            if step not in INGEST_STEPS:
                raise ValueError(f"unknown step {step!r} (steps: {', '.join(INGEST_STEPS)})")
            if not 1 <= number <= 1000:
                raise ValueError(f"{step}: must be between 1 and 1000")
        return value

    @model_validator(mode="after")
    def _llm_configured(self) -> Settings:
        if self.analyzer is AnalyzerName.OPENAI:
            missing = [
                f"TRIAGED_{name.upper()}"
                for name in ("llm_base_url", "llm_model")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"TRIAGED_ANALYZER=openai needs {' and '.join(missing)}")
        if self.llm_base_url is not None:
            parts = urlsplit(self.llm_base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("TRIAGED_LLM_BASE_URL must be an http(s) URL")
        return self

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        origins = []
        for item in value:
            parts = urlsplit(item)
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.path not in ("", "/")
                or parts.query
                or parts.fragment
            ):
                raise ValueError(
                    f"not an origin (scheme://host[:port], no path, no wildcard): {item!r}"
                )
            origins.append(f"{parts.scheme}://{parts.netloc}".lower())
        return tuple(origins)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        text = value.get_secret_value().strip()
        if "://" in text:
            if urlsplit(text).scheme not in ("postgres", "postgresql"):
                raise ValueError("must be a postgresql:// URL or a libpq key=value string")
        else:
            try:
                conninfo_to_dict(text)
            except psycopg.ProgrammingError:
                raise ValueError(
                    "must be a postgresql:// URL or a libpq key=value string"
                ) from None
        return SecretStr(text)

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("TRIAGED_DB_POOL_MIN_SIZE must not exceed TRIAGED_DB_POOL_MAX_SIZE")
        return self

    @field_validator(
        "bootstrap_admin_email",
        "bootstrap_admin_password",
        "initial_admin_password_file",
        "llm_base_url",
        "llm_model",
        "llm_api_key",
        "taxonomy",
        "severity_rules",
        "routing_rules",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _bootstrap_pair(self) -> Settings:
        if (self.bootstrap_admin_email is None) != (self.bootstrap_admin_password is None):
            raise ValueError(
                "TRIAGED_BOOTSTRAP_ADMIN_EMAIL and TRIAGED_BOOTSTRAP_ADMIN_PASSWORD must be "
                "set together"
            )
        return self

    @model_validator(mode="after")
    def _throttle_order(self) -> Settings:
        for scope in ("account", "address"):
            free = getattr(self, f"auth_{scope}_free_failures")
            lock = getattr(self, f"auth_{scope}_lock_failures")
            if lock < free:
                raise ValueError(
                    f"TRIAGED_AUTH_{scope.upper()}_LOCK_FAILURES must not be below "
                    f"TRIAGED_AUTH_{scope.upper()}_FREE_FAILURES"
                )
        return self

    @property
    def embedded_database(self) -> bool:
        """True when triaged runs its own PostgreSQL (no database URL configured)."""
        return self.database_url is None

    def public_view(self) -> dict[str, str]:
        """Every setting as its env variable name and a printable value, secrets masked."""
        view: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "database_url":
                shown = "(embedded)" if value is None else mask_url(value.get_secret_value())
            elif isinstance(value, SecretStr):
                shown = "********"
            elif isinstance(value, StrEnum):
                shown = value.value
            elif isinstance(value, tuple):
                shown = ",".join(value)
            elif isinstance(value, dict):
                shown = ",".join(f"{k}={v}" for k, v in value.items())
            else:
                shown = str(value)
            view[ENV_PREFIX + name.upper()] = shown
        return view


def mask_url(url: str) -> str:
    """The URL (or key=value conninfo) with any password replaced by ``***``.

    Works on the text, without parsing hosts or ports, so that multi-host URLs, IPv6
    literals and a ``password=`` query parameter are all masked and nothing raises.
    """
    if "://" not in url:
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)
    masked = re.sub(r"^([^:/]+://[^:/@?#]*):[^@/?#]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", masked)


SECRET_FIELDS = frozenset({"database_url", "bootstrap_admin_password", "llm_api_key"})


def load_settings() -> Settings:
    """Build and validate the settings from the environment (and ``TRIAGED_ENV_FILE``).

    Variables set in the environment win over the env file.

    Raises:
        ConfigError: with one human-readable line per bad field, naming its variable.
    """
    env_file = os.environ.get(ENV_FILE_VARIABLE)
    if env_file and not Path(env_file).is_file():
        raise ConfigError([f"{ENV_FILE_VARIABLE}: no such file: {env_file}"])
    try:
        return Settings(_env_file=env_file or None)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        if not error["loc"]:  # a rule across fields: its message names them
            lines.append(error["msg"].removeprefix("Value error, "))
            continue
        field = str(error["loc"][0])
        variable = ENV_PREFIX + field.upper()
        message = error["msg"].removeprefix("Value error, ")
        if field not in SECRET_FIELDS and "input" in error and isinstance(error["input"], str):
            message += f" (got {error['input']!r})"
        lines.append(f"{variable}: {message}")
    return lines


@dataclass(frozen=True, kw_only=True)
class SystemdEnvironment:
    """What systemd tells a ``Type=notify`` service through its environment."""

    notify_socket: str | None
    watchdog_usec: int | None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings: half the timeout systemd enforces."""
        if not self.watchdog_usec:
            return None
        return self.watchdog_usec / 1_000_000 / 2


def read_systemd_environment() -> SystemdEnvironment:
    """``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` (only when ``WATCHDOG_PID`` is us or unset)."""
    usec: int | None = None
    watchdog_pid = os.environ.get("WATCHDOG_PID")
    if watchdog_pid in (None, str(os.getpid())):
        try:
            usec = int(os.environ.get("WATCHDOG_USEC", "")) or None
        except ValueError:
            usec = None
    return SystemdEnvironment(
        notify_socket=os.environ.get("NOTIFY_SOCKET") or None, watchdog_usec=usec
    )
