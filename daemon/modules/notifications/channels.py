"""Notification channels in the database: created, changed, listed and deleted by an
admin (secrets write-only: a :class:`Channel` says only whether it has one).

Every function runs in the caller's transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from psycopg.types.json import Jsonb

from daemon.modules.ingestion import FetchRefused, check_outbound_url
from daemon.modules.notifications.channel_rules import (
    check_events,
    check_name,
    check_secret_follows,
    check_severity,
    split_config,
)
from daemon.modules.notifications.email_sender import check_smtp_host
from daemon.modules.notifications.errors import ChannelNotFound, DuplicateChannel
from daemon.shared.db.queries import load_queries
from daemon.shared.errors import ValidationFailed
from daemon.shared.pagination import Page, decode_cursor, fetch_limit, page_of

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from daemon.modules.ingestion import FetchPolicy
    from daemon.shared.db.psycopg_trio import TrioConnection

SQL = load_queries("daemon.modules.notifications", "queries.sql")


@attrs.frozen(kw_only=True)
class Channel:
    id: int
    name: str
    kind: str
    config: dict[str, Any]  # the shown part; never the secret
    has_secret: bool
    events: tuple[str, ...]
    min_severity: str
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Channel:
        id_, name, kind, config, has_secret, events, severity, enabled, created, updated = row
        return cls(
            id=id_,
            name=name,
            kind=kind,
            config=dict(config),
            has_secret=has_secret,
            events=tuple(events),
            min_severity=severity,
            enabled=enabled,
            created_at=created,
            updated_at=updated,
        )


def check_reachable(kind: str, config: Mapping[str, Any], policy: FetchPolicy) -> None:
    """A webhook's URL, an email channel's server must be one the SSRF guard lets out
    as far as can be told without DNS (loopback and private addresses only when the
    fetch settings allow them; the egress allowlist). What a name resolves to is checked
    when sending.

    Raises:
        ValidationFailed: on ``config.url`` or ``config.host``.
    """
    if kind == "email":
        try:
            check_smtp_host(str(config["host"]), int(config["port"]), policy)
        except FetchRefused as exc:
            raise ValidationFailed([{"field": "config.host", "message": str(exc)}]) from None
        return
    if kind != "webhook":
        return
    try:
        check_outbound_url(config["url"], policy)
    except FetchRefused as exc:
        raise ValidationFailed([{"field": "config.url", "message": str(exc)}]) from None


async def create_channel(
    conn: TrioConnection, data: Mapping[str, Any], policy: FetchPolicy
) -> Channel:
    """Raises ValidationFailed (naming the field), DuplicateChannel."""
    kind = data.get("kind")
    shown, secret = split_config(str(kind), data.get("config"), old_secret=None, creating=True)
    check_reachable(str(kind), shown, policy)
    row = await (
        await conn.execute(
            SQL["insert_channel"],
            {
                "name": check_name(data.get("name")),
                "kind": kind,
                "config": Jsonb(shown),
                "secret": secret,
                "events": check_events(data.get("events", [])),
                "min_severity": check_severity(data.get("min_severity", "low")),
                "enabled": _enabled(data.get("enabled", True)),
            },
        )
    ).fetchone()
    if row is None:
        raise DuplicateChannel(f"a channel named {data.get('name')!r} exists")
    return Channel.from_row(row)


async def update_channel(
    conn: TrioConnection, channel_id: int, changes: Mapping[str, Any], policy: FetchPolicy
) -> Channel:
    """Apply the given fields; ``config`` fields given replace those stored (the secret is
    kept unless given). Raises ChannelNotFound, ValidationFailed, DuplicateChannel."""
    current = await get_channel(conn, channel_id)
    row = await (await conn.execute(SQL["channel_secret"], {"id": channel_id})).fetchone()
    old_secret = row[0] if row else None
    if "kind" in changes and changes["kind"] != current.kind:
        raise ValidationFailed([{"field": "kind", "message": "a channel's kind cannot change"}])
    config = changes.get("config", {})
    if not isinstance(config, dict):
        raise ValidationFailed([{"field": "config", "message": "an object"}])
    check_secret_follows(current.kind, current.config, config, old_secret is not None)
    merged = {**current.config, **config}
    shown, secret = split_config(current.kind, merged, old_secret=old_secret, creating=False)
    check_reachable(current.kind, shown, policy)
    name = check_name(changes["name"]) if "name" in changes else current.name
    taken = await (
        await conn.execute(SQL["name_taken"], {"name": name, "id": channel_id})
    ).fetchone()
    if taken and taken[0]:
        raise DuplicateChannel(f"a channel named {name!r} exists")
    row = await (
        await conn.execute(
            SQL["update_channel"],
            {
                "id": channel_id,
                "name": name,
                "config": Jsonb(shown),
                "secret": secret,
                "events": check_events(changes["events"])
                if "events" in changes
                else list(current.events),
                "min_severity": check_severity(changes["min_severity"])
                if "min_severity" in changes
                else current.min_severity,
                "enabled": _enabled(changes.get("enabled", current.enabled)),
            },
        )
    ).fetchone()
    assert row is not None
    return Channel.from_row(row)


def _enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationFailed([{"field": "enabled", "message": "true or false"}])
    return value


async def get_channel(conn: TrioConnection, channel_id: int) -> Channel:
    """Raises ChannelNotFound."""
    row = await (await conn.execute(SQL["get_channel"], {"id": channel_id})).fetchone()
    if row is None:
        raise ChannelNotFound(f"no notification channel with id {channel_id}")
    return Channel.from_row(row)


async def list_channels(
    conn: TrioConnection, *, cursor: str | None = None, limit: int = 50
) -> Page[Channel]:
    """Newest first. Raises ValidationFailed: a malformed cursor."""
    rows = await (
        await conn.execute(
            SQL["list_channels"],
            {"before_id": decode_cursor(cursor), "limit": fetch_limit(limit)},
            prepare=False,
        )
    ).fetchall()
    return page_of([Channel.from_row(row) for row in rows], limit, key=lambda c: c.id)


async def delete_channel(conn: TrioConnection, channel_id: int) -> None:
    """Its pending deliveries go with it. Raises ChannelNotFound."""
    row = await (await conn.execute(SQL["delete_channel"], {"id": channel_id})).fetchone()
    if row is None:
        raise ChannelNotFound(f"no notification channel with id {channel_id}")
