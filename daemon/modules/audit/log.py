"""The audit log: an append-only record of security and administrative events.

Contract:

* :func:`record` inserts one event on the caller's connection, inside the caller's
  transaction: the event commits or rolls back together with the change it describes.
  It never commits. Secrets (passwords, tokens, API keys) must never be put in
  ``details``; callers pass identifiers only.
* Events are never changed or deleted: this module has no function for it, and a
  trigger of the ``audit_events`` table refuses ``UPDATE``, ``DELETE`` and ``TRUNCATE``
  (``REVOKE`` cannot bind the table's owner, which is the role triaged connects as).
* :func:`list_events` pages newest first by id with an opaque cursor. An event whose
  transaction commits after a reader has paged past its id is not shown to that reader
  (ids are taken at insert, not at commit); a fresh listing shows it.
* ``at`` is the insert time (``clock_timestamp()``), not the transaction start.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import attrs
from psycopg import sql
from psycopg.types.json import Jsonb

from daemon.shared.db.queries import load_queries
from daemon.shared.errors import ValidationFailed
from daemon.shared.pagination import Page, decode_cursor, fetch_limit, page_of

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from daemon.shared.db.psycopg_trio import TrioConnection

SQL = load_queries("daemon.modules.audit", "queries.sql")

DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 500


class ActorType(StrEnum):
    """Who acted; values equal the ``audit_actor`` enum in the database."""

    USER = "user"
    API_KEY = "api_key"
    SYSTEM = "system"  # the daemon itself or the CLI (an operator with database access)
    ANONYMOUS = "anonymous"  # not authenticated (a login attempt)


@attrs.frozen(kw_only=True)
class Actor:
    type: ActorType
    id: int | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(type=ActorType.SYSTEM)

    @classmethod
    def anonymous(cls) -> Actor:
        return cls(type=ActorType.ANONYMOUS)


@attrs.frozen(kw_only=True)
class AuditContext:
    """Who does something, from where: what every audited operation is given."""

    actor: Actor
    client_addr: str | None = None
    request_id: str | None = None

    @classmethod
    def system(cls, *, request_id: str | None = None) -> AuditContext:
        return cls(actor=Actor.system(), request_id=request_id)


@attrs.frozen(kw_only=True)
class AuditEvent:
    id: int
    at: datetime
    actor: Actor
    action: str
    target_type: str | None
    target_id: str | None
    client_addr: str | None
    request_id: str | None
    details: dict[str, Any]

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> AuditEvent:
        (id_, at, actor_type, actor_id, action, target_type, target_id, addr, rid, details) = row
        return cls(
            id=id_,
            at=at,
            actor=Actor(type=ActorType(actor_type), id=actor_id),
            action=action,
            target_type=target_type,
            target_id=target_id,
            client_addr=addr,
            request_id=rid,
            details=details,
        )


@attrs.frozen(kw_only=True)
class AuditFilter:
    """Conditions of :func:`list_events`; every field left None matches everything."""

    action: str | None = None  # exact action, e.g. "auth.login_failed"
    action_prefix: str | None = None  # e.g. "user." for every user event
    actor_type: ActorType | None = None
    actor_id: int | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None  # at >= since
    until: datetime | None = None  # at < until


AuditPage = Page[AuditEvent]  # a page of events; ``items`` newest first


def audit_filter_sql(filters: AuditFilter) -> tuple[sql.SQL, dict[str, Any]]:
    """The SQL predicate of ``filters`` over ``audit_events`` and its parameters: the
    one translation of an :class:`AuditFilter`, used by the list and the CSV export
    alike (``before_id`` and ``limit`` are free parameter names)."""
    params = {
        "action": filters.action,
        "action_prefix": filters.action_prefix,
        "actor_type": None if filters.actor_type is None else filters.actor_type.value,
        "actor_id": filters.actor_id,
        "target_type": filters.target_type,
        "target_id": filters.target_id,
        "since": filters.since,
        "until": filters.until,
    }
    return sql.SQL(SQL["audit_filter"]), params


async def record(
    conn: TrioConnection,
    context: AuditContext,
    action: str,
    *,
    target_type: str | None = None,
    target_id: object = None,
    details: Mapping[str, Any] | None = None,
) -> int:
    """Append one event in the caller's transaction; return its id. Never commits.

    ``action`` is dotted lowercase (``"user.created"``); ``target_id`` is stored as text.
    """
    row = await (
        await conn.execute(
            SQL["insert_event"],
            {
                "actor_type": context.actor.type.value,
                "actor_id": context.actor.id,
                "action": action,
                "target_type": target_type,
                "target_id": None if target_id is None else str(target_id),
                "client_addr": context.client_addr,
                "request_id": context.request_id,
                "details": Jsonb(dict(details or {})),
            },
        )
    ).fetchone()
    assert row is not None
    return int(row[0])


@attrs.frozen(kw_only=True)
class NewEvent:
    """One event for :func:`record_many` (the arguments of :func:`record`)."""

    context: AuditContext
    action: str
    target_type: str | None = None
    target_id: object = None
    details: Mapping[str, Any] | None = None


async def record_many(conn: TrioConnection, events: Sequence[NewEvent]) -> None:
    """Append events in the caller's transaction, in order, in one statement. Never
    commits."""
    if not events:
        return
    rows = [
        {
            "n": n,
            "actor_type": e.context.actor.type.value,
            "actor_id": e.context.actor.id,
            "action": e.action,
            "target_type": e.target_type,
            "target_id": None if e.target_id is None else str(e.target_id),
            "client_addr": e.context.client_addr,
            "request_id": e.context.request_id,
            "details": dict(e.details or {}),
        }
        for n, e in enumerate(events)
    ]
    await conn.execute(SQL["insert_events"], {"events": Jsonb(rows)})


async def list_events(
    conn: TrioConnection,
    *,
    filters: AuditFilter | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIST_LIMIT,
) -> AuditPage:
    """A page of events matching ``filters``, newest first.

    ``cursor`` is the ``next_cursor`` of the previous page (None for the first one).
    Read-only; runs in the caller's transaction.

    Raises:
        ValidationFailed: a malformed cursor or a limit outside 1..MAX_LIST_LIMIT.
    """
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValidationFailed(
            [{"field": "limit", "message": f"must be between 1 and {MAX_LIST_LIMIT}"}]
        )
    predicate, params = audit_filter_sql(filters or AuditFilter())
    rows = await (
        await conn.execute(
            sql.SQL(SQL["list_events"]).format(filter=predicate),
            {**params, "before_id": decode_cursor(cursor), "limit": fetch_limit(limit)},
        )
    ).fetchall()
    return page_of([AuditEvent.from_row(row) for row in rows], limit, key=lambda e: e.id)
