"""Settings: the one typed, frozen configuration object of triaged.

Built once at start-up by :func:`load_settings` from ``TRIAGED_*`` environment variables
and, optionally, an env file named by ``TRIAGED_ENV_FILE``; then passed down explicitly.
Nothing else in the package reads ``os.environ``. The fields come in groups, one module
each (service, database, auth, ingestion, analysis, retention); rules across groups live here.
"""

from __future__ import annotations

import ipaddress
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from daemon.shared.config.analysis import AnalysisSettings
from daemon.shared.config.auth import AuthSettings
from daemon.shared.config.case_work import CaseWorkSettings
from daemon.shared.config.database import DatabaseSettings
from daemon.shared.config.exports import ExportSettings
from daemon.shared.config.ingestion import IngestionSettings
from daemon.shared.config.notifications import NotificationSettings
from daemon.shared.config.retention import RetentionSettings
from daemon.shared.config.service import ServiceSettings
from daemon.shared.config.sources import SourcesSettings
from daemon.shared.config.values import (
    ENV_FILE_VARIABLE,
    ENV_PREFIX,
)
from daemon.shared.errors import ConfigError


class Settings(
    BaseSettings,
    NotificationSettings,
    RetentionSettings,
    ExportSettings,
    CaseWorkSettings,
    SourcesSettings,
    AnalysisSettings,
    IngestionSettings,
    AuthSettings,
    DatabaseSettings,
    ServiceSettings,
):
    """Every setting of triaged. Field ``x`` is read from ``TRIAGED_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

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
        "escalation_policy",
        "escalation_policy_file",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

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
