"""Sources in the database: create, read, update, delete (hide), enable and disable.

Each source of a pull kind owns one queue schedule, ``source.<id>``, on the
``sources.poll`` queue (payload ``{"source_id": id}``), written in the same transaction
as the source: created with it, redefined when its schedule changes, enabled and disabled
with it, deleted with it. The queue's scheduler fires each slot once across processes.

Delete: a source is never removed while documents point at it: it is *hidden* (marked
deleted, disabled, its schedule removed; it no longer appears in lists, its name is free
again) and its documents keep their ``source_id``. The built-in ``upload`` source cannot
be deleted.

Every write is audited (``source.created``, ``.updated``, ``.deleted``, ``.enabled``,
``.disabled``) in its transaction. Secrets are in :attr:`Source.secrets` for the pollers;
the API never shows them, and the audit details never carry them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from psycopg.types.json import Jsonb

from daemon.modules.audit import record
from daemon.modules.sources.errors import DuplicateSourceName, SourceNotFound, SourceNotPollable
from daemon.modules.sources.kind_config import (
    PULL_KINDS,
    CheckedSource,
    Limits,
    SourcePolicy,
    Timing,
    check_config,
    check_kind,
    check_limits,
    check_metadata,
    check_name,
    check_schedule,
    check_title_template,
)
from daemon.queue import Schedule, delete_schedule, enqueue, save_schedule
from daemon.shared.db.queries import load_queries
from daemon.shared.errors import ValidationFailed
from daemon.shared.pagination import Page, fetch_limit, page_of

if TYPE_CHECKING:
    from datetime import datetime

    from daemon.modules.audit import AuditContext
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

SQL = load_queries("daemon.modules.sources", "queries.sql")
POLL_QUEUE = "sources.poll"


def schedule_name(source_id: int) -> str:
    return f"source.{source_id}"


@attrs.frozen(kw_only=True)
class Source:
    """A source as stored. ``secrets`` never leave the process (no API, no log);
    ``poll_state`` is its kind's memory between polls (ETag, Last-Modified)."""

    id: int
    name: str
    kind: str
    config: dict[str, Any]
    schedule: Timing | None
    enabled: bool
    metadata: dict[str, Any]
    title_template: str
    limits: Limits
    last_poll_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    next_poll_at: datetime | None
    disabled_reason: str | None
    builtin: bool
    created_at: datetime
    updated_at: datetime
    secrets: dict[str, Any] = attrs.field(repr=False)
    poll_state: dict[str, Any] = attrs.field(repr=False)

    @property
    def pulled(self) -> bool:
        return self.kind in PULL_KINDS

    def queue_schedule(self) -> Schedule | None:
        """The queue schedule this source owns (None: a push kind)."""
        if self.schedule is None or not self.pulled:
            return None
        return Schedule(
            name=schedule_name(self.id),
            queue=POLL_QUEUE,
            cron=self.schedule.cron,
            interval=self.schedule.interval_seconds,
            timezone=self.schedule.timezone,
            payload={"source_id": self.id},
            enabled=self.enabled,
        )


def _timing(raw: dict[str, Any] | None) -> Timing | None:
    if raw is None:
        return None
    return Timing(
        interval_seconds=raw.get("interval_seconds"),
        cron=raw.get("cron"),
        timezone=raw.get("timezone", "UTC"),
    )


def _source(row: tuple[Any, ...]) -> Source:
    (id_, name, kind, config, schedule, enabled, metadata, title_template, items, max_bytes,
     timeout, last_poll_at, last_success_at, last_error, failures, next_poll_at,
     disabled_reason, builtin, created_at, updated_at, secrets, poll_state) = row  # fmt: skip
    return Source(
        id=id_, name=name, kind=kind, config=config, schedule=_timing(schedule),
        enabled=enabled, metadata=metadata, title_template=title_template,
        limits=Limits(items_per_poll=items, bytes_per_item=max_bytes, timeout_seconds=timeout),
        last_poll_at=last_poll_at, last_success_at=last_success_at, last_error=last_error,
        consecutive_failures=failures, next_poll_at=next_poll_at,
        disabled_reason=disabled_reason, builtin=builtin, created_at=created_at,
        updated_at=updated_at, secrets=secrets, poll_state=poll_state,
    )  # fmt: skip


def check_source_input(
    body: dict[str, Any], policy: SourcePolicy, *, current: Source | None = None
) -> CheckedSource:
    """A whole (POST) or partial (PATCH, ``current`` given) definition, validated.

    Raises:
        ValidationFailed: naming the field.
    """
    known = {"name", "kind", "config", "schedule", "enabled", "metadata", "title_template",
             "limits"}  # fmt: skip
    for key in body:
        if key not in known:
            raise ValidationFailed([{"field": key, "message": "unknown field"}])
    if current is None:
        kind = check_kind(body.get("kind"))
    else:
        kind = current.kind
        if "kind" in body and body["kind"] != kind:
            raise ValidationFailed([{"field": "kind", "message": "cannot be changed"}])
    name = check_name(body["name"] if "name" in body or current is None else current.name)
    if current is not None and "config" not in body:
        config, secrets = current.config, current.secrets
    else:
        config, secrets = check_config(
            kind, body.get("config"), policy,
            stored_secrets=current.secrets if current is not None else None,
            stored_config=current.config if current is not None else None,
        )  # fmt: skip
    if current is not None and "schedule" not in body:
        schedule = current.schedule
    else:
        schedule = check_schedule(kind, body.get("schedule"))
    enabled = body.get("enabled", True if current is None else current.enabled)
    if not isinstance(enabled, bool):
        raise ValidationFailed([{"field": "enabled", "message": "must be a boolean"}])
    metadata = (
        check_metadata(body.get("metadata"))
        if current is None or "metadata" in body
        else current.metadata
    )
    template = (
        check_title_template(body.get("title_template"))
        if current is None or "title_template" in body
        else current.title_template
    )
    limits = check_limits(body.get("limits"), current.limits if current is not None else None)
    return CheckedSource(
        name=name, kind=kind, config=config, secrets=secrets, schedule=schedule,
        enabled=enabled, metadata=metadata, title_template=template, limits=limits,
    )  # fmt: skip


def _columns(checked: CheckedSource) -> dict[str, Any]:
    return {
        "name": checked.name,
        "kind": checked.kind,
        "config": Jsonb(checked.config),
        "secrets": Jsonb(checked.secrets),
        "schedule": None if checked.schedule is None else Jsonb(checked.schedule.as_json()),
        "enabled": checked.enabled,
        "metadata": Jsonb(checked.metadata),
        "title_template": checked.title_template,
        "max_items_per_poll": checked.limits.items_per_poll,
        "max_item_bytes": checked.limits.bytes_per_item,
        "timeout_seconds": checked.limits.timeout_seconds,
    }


def _audit_details(checked: CheckedSource) -> dict[str, Any]:
    """What the audit log keeps of a definition: never the secrets, only their names."""
    return {
        "name": checked.name,
        "kind": checked.kind,
        "config": checked.config,
        "secrets_set": sorted(checked.secrets),
        "schedule": None if checked.schedule is None else checked.schedule.as_json(),
        "enabled": checked.enabled,
    }


async def _sync_schedule(conn: TrioConnection, source: Source) -> None:
    schedule = source.queue_schedule()
    if schedule is not None:
        await save_schedule(conn, schedule)


async def create_source(pool: Pool, checked: CheckedSource, *, context: AuditContext) -> Source:
    """Store a new source, its queue schedule and the audit event; one transaction.

    Raises:
        DuplicateSourceName: a (visible) source has the name.
    """
    async with pool.transaction() as conn:
        row = await (await conn.execute(SQL["insert_source"], _columns(checked))).fetchone()
        if row is None:
            raise DuplicateSourceName(f"a source named {checked.name!r} exists")
        source = await _get(conn, int(row[0]))
        await _sync_schedule(conn, source)
        await record(
            conn, context, "source.created", target_type="source", target_id=source.id,
            details=_audit_details(checked),
        )  # fmt: skip
    return source


async def update_source(
    pool: Pool, source_id: int, body: dict[str, Any], policy: SourcePolicy, *,
    context: AuditContext,
) -> Source:  # fmt: skip
    """Apply a partial definition (PATCH); the schedule follows; one transaction.
    Enabling a source disabled for failures resets its failure count and backoff.

    Raises:
        SourceNotFound, DuplicateSourceName, ValidationFailed.
    """
    async with pool.transaction() as conn:
        current = await _get(conn, source_id, lock=True)
        checked = check_source_input(body, policy, current=current)
        taken = await (
            await conn.execute(SQL["name_taken"], {"name": checked.name, "id": source_id})
        ).fetchone()
        if taken is not None and taken[0]:
            raise DuplicateSourceName(f"a source named {checked.name!r} exists")
        await conn.execute(SQL["update_source"], {**_columns(checked), "id": source_id})
        source = await _get(conn, source_id)
        await _sync_schedule(conn, source)
        await record(
            conn, context, "source.updated", target_type="source", target_id=source_id,
            details={**_audit_details(checked), "fields": sorted(body)},
        )  # fmt: skip
    return source


async def delete_source(pool: Pool, source_id: int, *, context: AuditContext) -> None:
    """Hide a source (see the module docstring); idempotent for the caller only in
    effect: a second delete answers SourceNotFound.

    Raises:
        SourceNotFound: no such (visible) source, or the built-in upload source.
    """
    async with pool.transaction() as conn:
        source = await _get(conn, source_id, lock=True)
        row = await (await conn.execute(SQL["delete_source"], {"id": source_id})).fetchone()
        if row is None:
            raise SourceNotFound("the built-in upload source cannot be deleted")
        if source.queue_schedule() is not None:
            await delete_schedule(conn, schedule_name(source_id))
        await record(
            conn, context, "source.deleted", target_type="source", target_id=source_id,
            details={"name": source.name, "kind": source.kind},
        )  # fmt: skip


async def set_source_enabled(
    pool: Pool, source_id: int, enabled: bool, *, context: AuditContext,
    reason: str | None = None,
) -> Source:  # fmt: skip
    """Enable (failures and backoff reset) or disable (with ``reason``) a source and its
    schedule; audited; one transaction.

    Raises:
        SourceNotFound.
    """
    async with pool.transaction() as conn:
        await _get(conn, source_id, lock=True)
        await conn.execute(
            SQL["set_enabled"],
            {"id": source_id, "enabled": enabled, "reason": reason or "disabled by an operator"},
        )
        source = await _get(conn, source_id)
        await _sync_schedule(conn, source)
        await record(
            conn, context, "source.enabled" if enabled else "source.disabled",
            target_type="source", target_id=source_id, details={"reason": reason},
        )  # fmt: skip
    return source


async def request_poll(pool: Pool, source_id: int, *, context: AuditContext) -> int:
    """Enqueue a poll of the source now ("poll now": the same job its schedule fires);
    audited; returns the job's id. Not deduplicated: two requests are two polls, which
    the poll core keeps from creating anything twice.

    Raises:
        SourceNotFound: no such (visible) source.
        SourceNotPollable: a push kind, or a disabled source (enable it first).
    """
    async with pool.transaction() as conn:
        source = await _get(conn, source_id)
        if not source.pulled:
            raise SourceNotPollable(f"{source.kind} sources receive documents; they are not polled")
        if not source.enabled:
            raise SourceNotPollable(
                f"the source is disabled ({source.disabled_reason}); enable it first"
            )
        job = await enqueue(conn, POLL_QUEUE, {"source_id": source_id, "trigger": "manual"})
        await record(
            conn, context, "source.poll_requested", target_type="source", target_id=source_id,
            details={"job_id": job.id},
        )  # fmt: skip
    return job.id


async def _get(conn: TrioConnection, source_id: int, *, lock: bool = False) -> Source:
    query = SQL["lock_source"] if lock else SQL["get_source"]
    row = await (await conn.execute(query, {"id": source_id})).fetchone()
    if row is None:
        raise SourceNotFound(f"no source with id {source_id}")
    return _source(row)


async def get_source(pool: Pool, source_id: int) -> Source:
    """Raises: SourceNotFound (also for a deleted source)."""
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        return await _get(conn, source_id)


async def list_sources(
    pool: Pool, *, after: int | None = None, limit: int = 100, kind: str | None = None
) -> Page[Source]:
    """Visible sources, oldest first, a page of ``limit`` after the cursor ``after``."""
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        rows = await (
            await conn.execute(
                SQL["list_sources"], {"after": after, "limit": fetch_limit(limit), "kind": kind}
            )
        ).fetchall()
    return page_of([_source(row) for row in rows], limit, key=lambda s: s.id)


async def check_upload_source(pool: Pool, source_id: int) -> None:
    """That ``source_id`` names a visible source of kind ``upload``.

    Raises:
        ValidationFailed: naming ``source_id``.
    """
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        row = await (await conn.execute(SQL["upload_source_exists"], {"id": source_id})).fetchone()
    if row is None or not row[0]:
        raise ValidationFailed(
            [{"field": "source_id", "message": "must be the id of a source of kind upload"}]
        )


@attrs.frozen(kw_only=True)
class PollRecord:
    id: int
    job_id: int | None
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    items_seen: int
    documents_created: int
    error: str | None
    duration_ms: float | None


async def list_polls(
    pool: Pool, source_id: int, *, before: int | None = None, limit: int = 50
) -> Page[PollRecord]:
    """A source's polls, newest first.

    Raises:
        SourceNotFound.
    """
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        await _get(conn, source_id)
        rows = await (
            await conn.execute(
                SQL["list_polls"],
                {"source_id": source_id, "before": before, "limit": fetch_limit(limit)},
            )
        ).fetchall()
    records = [PollRecord(**dict(zip(attrs.fields_dict(PollRecord), row, strict=True)))
               for row in rows]  # fmt: skip
    return page_of(records, limit, key=lambda p: p.id)
