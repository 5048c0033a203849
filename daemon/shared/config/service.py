"""The process as a service: where its data and database are, how it serves HTTP, logs
and stops.

A group of fields of :class:`daemon.shared.config.Settings` (field ``x`` is read from
``TRIAGED_X``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, Field, SecretStr, field_validator

from daemon.shared.config.values import (
    DEFAULT_HTTP_GRACE_SECONDS,
    DEFAULT_HTTP_HOST,
    DEFAULT_HTTP_PORT,
    DEFAULT_JOB_GRACE_SECONDS,
    DEFAULT_KEEP_ALIVE_SECONDS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_PRE_STOP_DELAY_SECONDS,
    CommaList,
    LogFormat,
    LogLevel,
    Seconds,
)


class ServiceSettings(BaseModel):
    """The process as a service: where its data and database are, how it serves HTTP, logs"""

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
    startup_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0,
        description="At start, how long to wait for the database before giving up (exit 1).",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

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
