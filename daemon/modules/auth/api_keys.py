"""API keys for machine clients.

Format: ``tgd_<prefix>_<secret>``: ``prefix`` is 8 hex digits, shown in listings to
recognise a key; ``secret`` is ``secrets.token_urlsafe(32)`` (256 bits). The key is
returned once, by :func:`create_api_key`; only its SHA-256 is stored (a fast hash is
enough for a random 256-bit secret, and keeps authentication cheap).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import psycopg

from daemon.modules.audit import ActorType, AuditContext, record
from daemon.modules.auth.errors import ApiKeyNotFound, InvalidAccountData
from daemon.modules.auth.policy import LAST_USED_TOUCH_SECONDS
from daemon.modules.auth.roles import Principal, PrincipalKind, Role
from daemon.modules.auth.users import SQL, parse_role

if TYPE_CHECKING:
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

API_KEY_PREFIX = "tgd_"
NAME_MAX_LENGTH = 100
_PREFIX_ATTEMPTS = 5


def new_api_key() -> tuple[str, str]:
    """A fresh ``(prefix, key)``."""
    prefix = secrets.token_hex(4)
    return prefix, f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def looks_like_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


def key_hash(key: str) -> bytes:
    """The SHA-256 digest stored for a key."""
    return hashlib.sha256(key.encode()).digest()


@attrs.frozen(kw_only=True)
class ApiKey:
    """An API key as listed: never its secret."""

    id: int
    name: str
    prefix: str
    role: Role
    created_by: int | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def hint(self) -> str:
        """What to show to recognise the key: ``tgd_<prefix>_…``."""
        return f"{API_KEY_PREFIX}{self.prefix}_…"

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ApiKey:
        return cls(
            id=row[0],
            name=row[1],
            prefix=row[2],
            role=Role(row[3]),
            created_by=row[4],
            created_at=row[5],
            expires_at=row[6],
            last_used_at=row[7],
            revoked_at=row[8],
        )


@attrs.frozen(kw_only=True)
class CreatedApiKey:
    key: ApiKey
    secret: str  # the whole key, to show once; it cannot be read back later


async def create_api_key(
    pool: Pool,
    *,
    name: str,
    role: Role | str,
    expires_at: datetime | None = None,
    context: AuditContext,
) -> CreatedApiKey:
    """Create a key (audited as ``api_key.created``, in the same transaction).

    The creator recorded is the context's actor when it is a user. Checking that the
    caller is an admin is the caller's job (the route declares it).

    Raises:
        InvalidAccountData: blank or too long name, unknown role, naive or past expiry.
    """
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX_LENGTH:
        raise InvalidAccountData("name", f"name: 1 to {NAME_MAX_LENGTH} characters")
    role = parse_role(role)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidAccountData("expires_at", "expires_at: needs a time zone")
        if expires_at <= datetime.now(UTC):
            raise InvalidAccountData("expires_at", "expires_at: must be in the future")
    creator = context.actor.id if context.actor.type is ActorType.USER else None
    for attempt in range(_PREFIX_ATTEMPTS):
        prefix, secret = new_api_key()
        try:
            async with pool.transaction() as conn:
                row = await (
                    await conn.execute(
                        SQL["insert_api_key"],
                        {
                            "name": name,
                            "prefix": prefix,
                            "secret_hash": key_hash(secret),
                            "role": role.value,
                            "created_by": creator,
                            "expires_at": expires_at,
                        },
                    )
                ).fetchone()
                assert row is not None
                key = ApiKey.from_row(row)
                await record(
                    conn,
                    context,
                    "api_key.created",
                    target_type="api_key",
                    target_id=key.id,
                    details={"name": name, "prefix": prefix, "role": role.value},
                )
        except psycopg.errors.UniqueViolation:  # a prefix collision (1 in 2**32)
            if attempt == _PREFIX_ATTEMPTS - 1:
                raise
            continue
        return CreatedApiKey(key=key, secret=secret)
    raise AssertionError("unreachable")


async def get_api_key(conn: TrioConnection, key_id: int) -> ApiKey:
    """Raises ApiKeyNotFound."""
    row = await (await conn.execute(SQL["get_api_key"], {"id": key_id})).fetchone()
    if row is None:
        raise ApiKeyNotFound(f"no API key with id {key_id}")
    return ApiKey.from_row(row)


async def list_api_keys(conn: TrioConnection, *, include_revoked: bool = False) -> list[ApiKey]:
    """Keys by id; revoked ones only when asked."""
    rows = await (
        await conn.execute(SQL["list_api_keys"], {"include_revoked": include_revoked})
    ).fetchall()
    return [ApiKey.from_row(row) for row in rows]


async def revoke_api_key(pool: Pool, key_id: int, *, context: AuditContext) -> ApiKey:
    """Revoke a key at once; idempotent (revoking a revoked key changes and audits nothing).

    Audits ``api_key.revoked`` in the same transaction. Raises ApiKeyNotFound.
    """
    async with pool.transaction() as conn:
        row = await (await conn.execute(SQL["revoke_api_key"], {"id": key_id})).fetchone()
        if row is None:
            return await get_api_key(conn, key_id)
        key = ApiKey.from_row(row)
        await record(
            conn,
            context,
            "api_key.revoked",
            target_type="api_key",
            target_id=key_id,
            details={"name": key.name, "prefix": key.prefix},
        )
        return key


async def authenticate_api_key(
    conn: TrioConnection, key: str
) -> tuple[Principal, float | None] | None:
    """The principal of a live key (not revoked, not expired) and the seconds it has left
    (None: no expiry), or None.

    One autocommit-friendly statement; ``last_used_at`` is written at most once a minute.
    """
    row = await (
        await conn.execute(
            SQL["authenticate_api_key"],
            {"secret_hash": key_hash(key), "touch_after": LAST_USED_TOUCH_SECONDS},
        )
    ).fetchone()
    if row is None:
        return None
    principal = Principal(
        kind=PrincipalKind.API_KEY, id=row[0], name=row[1], role=Role(row[2]), expires_at=row[3]
    )
    return principal, row[4]
