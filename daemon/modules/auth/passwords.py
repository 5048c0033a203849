"""Passwords: the policy, and argon2id hashing off the event loop.

Hashing and verifying run on the process's low-priority CPU threads (the policy's
``cpu``, a :class:`daemon.shared.cpu_threads.CpuThreads` sized once by the composition
root: at most one call per usable CPU at a time, each hash taking ``hash_memory_kib`` of
memory), so logins never stall the event loop nor starve it of CPU.
:func:`verify_password` of an unknown user checks the password against a dummy hash
made with the same parameters, so both take the same time.
"""

from __future__ import annotations

import functools
import secrets
from typing import TYPE_CHECKING, Any, TypeVar

import argon2
import trio
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from daemon.modules.auth.errors import WeakPassword
from daemon.modules.auth.policy import PASSWORD_MAX_LENGTH, AuthPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


def check_password(password: str, *, email: str, policy: AuthPolicy) -> None:
    """Enforce the password policy.

    Raises:
        WeakPassword: too short (under ``policy.password_min_length`` characters), too long,
            blank, or equal to the email (ignoring case and surrounding spaces).
    """
    if len(password) < policy.password_min_length:
        raise WeakPassword(
            f"password: must be at least {policy.password_min_length} characters long"
        )
    if len(password) > PASSWORD_MAX_LENGTH:
        raise WeakPassword(f"password: must be at most {PASSWORD_MAX_LENGTH} characters long")
    if not password.strip():
        raise WeakPassword("password: must not be only spaces")
    if password.strip().casefold() == email.strip().casefold():
        raise WeakPassword("password: must not be the email address")


@functools.cache
def hasher(time_cost: int, memory_kib: int, parallelism: int) -> argon2.PasswordHasher:
    """The argon2id hasher for these parameters (one per parameter set)."""
    return argon2.PasswordHasher(
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        type=argon2.Type.ID,
    )


def _hasher(policy: AuthPolicy) -> argon2.PasswordHasher:
    return hasher(policy.hash_time_cost, policy.hash_memory_kib, policy.hash_parallelism)


@functools.cache
def _dummy_hash(time_cost: int, memory_kib: int, parallelism: int) -> str:
    return hasher(time_cost, memory_kib, parallelism).hash(secrets.token_urlsafe(16))


async def hash_password(password: str, policy: AuthPolicy) -> str:
    """The argon2id hash (PHC string) of ``password``, computed off the event loop."""
    return await _off_loop(policy, _hasher(policy).hash, password)


async def verify_password(stored_hash: str | None, password: str, policy: AuthPolicy) -> bool:
    """Whether ``password`` matches ``stored_hash``, computed off the event loop.

    ``stored_hash`` None (no such user) verifies against a dummy hash with the policy's
    parameters and returns False, taking as long as a real mismatch. A corrupt stored
    hash is a mismatch.
    """
    ph = _hasher(policy)
    key = (policy.hash_time_cost, policy.hash_memory_kib, policy.hash_parallelism)

    def run() -> bool:
        target = stored_hash if stored_hash is not None else _dummy_hash(*key)
        try:
            ph.verify(target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return stored_hash is not None

    return await _off_loop(policy, run)


async def _off_loop(policy: AuthPolicy, function: Callable[..., T], *args: Any) -> T:
    if policy.cpu is not None:
        return await policy.cpu.run(function, *args)
    return await trio.to_thread.run_sync(function, *args)


def needs_rehash(stored_hash: str, policy: AuthPolicy) -> bool:
    """Whether the hash was made with other parameters than the policy's."""
    try:
        return _hasher(policy).check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
