"""Schema migrations: numbered ``.sql`` files in :mod:`daemon.migrations` and in the
packages that ship their own schema (the job queue: :mod:`daemon.queue.migrations`).

The packages share one version sequence; a version used twice is refused.

Contract:
- ``apply`` is safe to run from many processes at once: it holds a session-level
  advisory lock for the whole run, so each migration is applied exactly once, and a
  process that waited finds the work done.
- Each migration runs in its own transaction together with its ``schema_migrations``
  row: a failure leaves the database at the previous version.
- An applied file whose checksum changed stops the run (``ChecksumMismatch``) before
  anything is applied; a database that is ahead of the code stops it too.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, LiteralString, cast

from daemon.shared.db.queries import load_queries
from daemon.shared.errors import ChecksumMismatch, MigrationError

if TYPE_CHECKING:
    from datetime import datetime

    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

log = logging.getLogger("triaged.migrate")

SQL = load_queries("daemon.shared.db", "migrate.sql")
MIGRATIONS_PACKAGE = "daemon.migrations"
# Every package holding migrations, by name (read as resources, not imported as code).
MIGRATIONS_PACKAGES = (MIGRATIONS_PACKAGE, "daemon.queue.migrations")
# Any fixed 64-bit number, the same for every triaged process on this database.
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"triaged.migrations").digest()[:8], "big", signed=True
)
_FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str


@dataclass(frozen=True, kw_only=True)
class MigrationStatus:
    version: int
    name: str
    state: str  # "applied", "pending", "changed" or "unknown" (in the database only)
    applied_at: datetime | None


def discover(packages: str | tuple[str, ...] = MIGRATIONS_PACKAGES) -> list[Migration]:
    """The migrations shipped in ``packages``, in version order.

    Raises:
        MigrationError: a ``.sql`` file is misnamed, or two files share a version.
    """
    if isinstance(packages, str):
        packages = (packages,)
    found: dict[int, Migration] = {}
    entries = [e for package in packages for e in resources.files(package).iterdir()]
    for entry in entries:
        if not entry.name.endswith(".sql"):
            continue
        match = _FILENAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(f"two migration files have version {version:04d}")
        data = entry.read_bytes()
        found[version] = Migration(
            version=version,
            name=match["name"],
            sql=data.decode("utf-8"),
            checksum=hashlib.sha256(data).hexdigest(),
        )
    return [found[v] for v in sorted(found)]


def latest_version(migrations: list[Migration] | None = None) -> int:
    """The version the database has once every shipped migration is applied."""
    migrations = discover() if migrations is None else migrations
    return migrations[-1].version if migrations else 0


async def apply(pool: Pool, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply pending migrations; return those this call applied.

    Raises:
        ChecksumMismatch: an applied migration file was changed.
        MigrationError: the database is newer than this code, or a migration failed.
    """
    migrations = discover() if migrations is None else migrations
    applied_now: list[Migration] = []
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        await conn.execute(SQL["lock"], {"key": ADVISORY_LOCK_KEY})
        try:
            await conn.execute(SQL["create_migrations_table"])
            applied = await _applied(conn)
            _check_consistency(migrations, applied)
            for migration in migrations:
                if migration.version in applied:
                    continue
                await _apply_one(conn, migration)
                applied_now.append(migration)
        finally:
            await conn.execute(SQL["unlock"], {"key": ADVISORY_LOCK_KEY})
            await conn.set_autocommit(False)
    return applied_now


async def status(pool: Pool, migrations: list[Migration] | None = None) -> list[MigrationStatus]:
    """Every migration known to the code or the database, with its state."""
    migrations = discover() if migrations is None else migrations
    async with pool.connection() as conn:
        row = await (await conn.execute(SQL["table_exists"])).fetchone()
        applied = await _applied(conn) if row and row[0] else {}
        await conn.rollback()
    result = []
    for migration in migrations:
        record = applied.pop(migration.version, None)
        if record is None:
            result.append(
                MigrationStatus(
                    version=migration.version, name=migration.name, state="pending", applied_at=None
                )
            )
        else:
            state = "applied" if record[1] == migration.checksum else "changed"
            result.append(
                MigrationStatus(
                    version=migration.version,
                    name=migration.name,
                    state=state,
                    applied_at=record[2],
                )
            )
    for version, (name, _checksum, applied_at) in sorted(applied.items()):
        result.append(
            MigrationStatus(version=version, name=name, state="unknown", applied_at=applied_at)
        )
    return result


async def current_version(conn: TrioConnection) -> int:
    """The highest applied version (0 on an empty database). Leaves no transaction open."""
    row = await (await conn.execute(SQL["table_exists"])).fetchone()
    version = 0
    if row and row[0]:
        latest = await (await conn.execute(SQL["latest_version"])).fetchone()
        version = int(latest[0]) if latest else 0
    if not conn.autocommit:
        await conn.rollback()
    return version


async def _applied(conn: TrioConnection) -> dict[int, tuple[str, str, datetime]]:
    rows = await (await conn.execute(SQL["applied"])).fetchall()
    return {int(r[0]): (str(r[1]), str(r[2]), r[3]) for r in rows}


def _check_consistency(
    migrations: list[Migration], applied: dict[int, tuple[str, str, datetime]]
) -> None:
    known = {m.version: m for m in migrations}
    for version, (name, checksum, _applied_at) in applied.items():
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{name} which this triaged does not "
                "know: it was migrated by a newer version; upgrade triaged"
            )
        if migration.checksum != checksum:
            raise ChecksumMismatch(
                f"migration {version:04d}_{migration.name}.sql was changed after it was applied "
                f"(recorded sha256 {checksum[:12]}…, file {migration.checksum[:12]}…); restore "
                "the original file and add a new migration instead"
            )


async def _apply_one(conn: TrioConnection, migration: Migration) -> None:
    started = time.monotonic()
    log.info(
        "applying migration %04d_%s",
        migration.version,
        migration.name,
        extra={"action": "migrate.apply", "version": migration.version},
    )
    try:
        async with conn.transaction():
            # A migration file is shipped inside the package: trusted, static SQL.
            await conn.execute(cast("LiteralString", migration.sql))
            await conn.execute(
                SQL["record"],
                {
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                    "duration_ms": int((time.monotonic() - started) * 1000),
                },
            )
    except Exception as exc:
        raise MigrationError(
            f"migration {migration.version:04d}_{migration.name}.sql failed: {exc}"
        ) from exc
