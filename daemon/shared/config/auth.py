"""Authentication: sessions, password hashing, login throttling, the first admin.

A group of fields of :class:`daemon.shared.config.Settings` (field ``x`` is read from
``TRIAGED_X``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from pydantic import BaseModel, Field, SecretStr, model_validator

from daemon.shared.config.values import (
    DEFAULT_ARGON2_MEMORY_KIB,
    DEFAULT_ARGON2_PARALLELISM,
    DEFAULT_ARGON2_TIME_COST,
    DEFAULT_PASSWORD_MIN_LENGTH,
    DEFAULT_SESSION_TTL_SECONDS,
)

if TYPE_CHECKING:
    from pathlib import Path


class AuthSettings(BaseModel):
    """Authentication: sessions, password hashing, login throttling, the first admin."""

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

    @model_validator(mode="after")
    def _bootstrap_pair(self) -> Self:
        if (self.bootstrap_admin_email is None) != (self.bootstrap_admin_password is None):
            raise ValueError(
                "TRIAGED_BOOTSTRAP_ADMIN_EMAIL and TRIAGED_BOOTSTRAP_ADMIN_PASSWORD must be "
                "set together"
            )
        return self

    @model_validator(mode="after")
    def _throttle_order(self) -> Self:
        for scope in ("account", "address"):
            free = getattr(self, f"auth_{scope}_free_failures")
            lock = getattr(self, f"auth_{scope}_lock_failures")
            if lock < free:
                raise ValueError(
                    f"TRIAGED_AUTH_{scope.upper()}_LOCK_FAILURES must not be below "
                    f"TRIAGED_AUTH_{scope.upper()}_FREE_FAILURES"
                )
        return self
