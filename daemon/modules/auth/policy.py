"""The rules of authentication as values: session lifetime, password policy, hashing
parameters and brute-force throttling. Pure: no I/O; the composition root builds the
process's policy once from the settings."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from daemon.shared.cpu_threads import CpuThreads

PASSWORD_MAX_LENGTH = 1024  # bounds the hashing work a request can ask for
LAST_USED_TOUCH_SECONDS = 60.0  # last_used_at is written at most this often per token
DEFAULT_SESSION_TTL_SECONDS = 12 * 3600.0
DEFAULT_PASSWORD_MIN_LENGTH = 12
# argon2-cffi's RFC 9106 "low memory" profile (its PasswordHasher defaults).
DEFAULT_ARGON2_TIME_COST = 3
DEFAULT_ARGON2_MEMORY_KIB = 64 * 1024
DEFAULT_ARGON2_PARALLELISM = 4


@attrs.frozen(kw_only=True)
class ThrottlePolicy:
    """Failed logins of one account or one client address.

    Failures below ``free_failures`` cost nothing. From ``free_failures`` on, each failure
    blocks the next attempt for ``base_delay`` seconds, doubling with each further
    failure; from ``lock_failures`` on, for ``lock_seconds``. A counter whose last failure
    is older than ``window_seconds`` starts afresh.
    """

    free_failures: int
    lock_failures: int
    base_delay: float = 1.0
    lock_seconds: float = 900.0
    window_seconds: float = 900.0

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.free_failures <= self.lock_failures:
            raise ValueError("need 1 <= free_failures <= lock_failures")

    def block_seconds(self, failures: int) -> float:
        """How long the next attempt is refused after ``failures`` failures (0: not)."""
        if failures >= self.lock_failures:
            return self.lock_seconds
        if failures >= self.free_failures:
            return min(self.lock_seconds, self.base_delay * 2 ** (failures - self.free_failures))
        return 0.0


def retry_after(seconds: float) -> int:
    """Whole seconds for a ``Retry-After`` header: rounded up, at least 1."""
    return max(1, math.ceil(seconds))


@attrs.frozen(kw_only=True)
class AuthPolicy:
    """Everything configurable about authentication (defaults: the settings' defaults).

    ``cpu``: the process's CPU threads, where password hashing runs at low priority (the
    composition root always sets it; None, in tools and tests: Trio's default threads,
    at normal priority, as many at once as callers). Not a rule: it takes no part in
    equality.
    """

    session_ttl_seconds: float = DEFAULT_SESSION_TTL_SECONDS
    password_min_length: int = DEFAULT_PASSWORD_MIN_LENGTH
    hash_time_cost: int = DEFAULT_ARGON2_TIME_COST
    hash_memory_kib: int = DEFAULT_ARGON2_MEMORY_KIB
    hash_parallelism: int = DEFAULT_ARGON2_PARALLELISM
    account_throttle: ThrottlePolicy = ThrottlePolicy(free_failures=5, lock_failures=10)
    address_throttle: ThrottlePolicy = ThrottlePolicy(free_failures=20, lock_failures=50)
    cpu: CpuThreads | None = attrs.field(default=None, eq=False, repr=False)
