"""The settings' value types, enums and defaults (shared by every group of settings)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field
from pydantic_settings import NoDecode

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
