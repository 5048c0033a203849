"""``triaged sources``: list sources with their health, show one, poll one now, enable or
disable one (operators with database access; audited as the system).

::

    triaged sources [list] [--json]
    triaged sources show SOURCE
    triaged sources poll SOURCE [--here]
    triaged sources enable SOURCE
    triaged sources disable SOURCE [--reason TEXT]

SOURCE is a source's id or name. ``poll`` enqueues the same job the schedule fires (a
worker runs it) and prints its id; ``--here`` runs the poll in this process and prints
what it found. Secrets are never printed. An unknown SOURCE exits with status 1, a
source that cannot be polled (a push kind, disabled) with status 1 too.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from daemon.modules.audit import AuditContext
from daemon.modules.sources import (
    Source,
    SourceError,
    get_source,
    list_polls,
    list_sources,
    request_poll,
    run_poll,
    set_source_enabled,
)

if TYPE_CHECKING:
    import argparse

    from daemon.shared.db.pool import Pool

EXIT_OK = 0
EXIT_NOT_FOUND = 1


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``sources`` and its actions ``list``, ``show``, ``poll``, ``enable``,
    ``disable``."""
    sources = commands.add_parser(
        "sources",
        help="list, show, poll, enable or disable document sources",
        description="Without an action: list the sources with their health.",
    )
    sources.add_argument("--json", action="store_true", help="print JSON, not a table")
    sources.set_defaults(handler=_list)
    actions = sources.add_subparsers(dest="sources_action", metavar="ACTION")
    listing = actions.add_parser("list", help="list the sources with their health")
    listing.add_argument("--json", action="store_true", help="print JSON, not a table")
    listing.set_defaults(handler=_list)
    show = actions.add_parser("show", help="a source's definition, health and last polls")
    show.add_argument("source", metavar="SOURCE", help="id or name")
    show.set_defaults(handler=_show)
    poll = actions.add_parser("poll", help="poll a source now")
    poll.add_argument("source", metavar="SOURCE", help="id or name")
    poll.add_argument(
        "--here", action="store_true", help="run the poll in this process, not by a worker"
    )
    poll.set_defaults(handler=_poll)
    enable = actions.add_parser("enable", help="enable a source (failures reset)")
    enable.add_argument("source", metavar="SOURCE", help="id or name")
    enable.set_defaults(handler=_enable, enabled=True, reason=None)
    disable = actions.add_parser("disable", help="disable a source")
    disable.add_argument("source", metavar="SOURCE", help="id or name")
    disable.add_argument("--reason", default="disabled by an operator (CLI)")
    disable.set_defaults(handler=_enable, enabled=False)


async def _all(pool: Pool) -> list[Source]:
    found: list[Source] = []
    after: int | None = None
    while True:
        page = await list_sources(pool, after=after, limit=500)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        after = int(page.next_cursor)


async def _find(pool: Pool, key: str) -> Source | None:
    if key.isdigit():
        try:
            return await get_source(pool, int(key))
        except SourceError:
            pass
    return next((s for s in await _all(pool) if s.name == key), None)


def _view(source: Source) -> dict[str, Any]:
    return {
        "id": source.id,
        "name": source.name,
        "kind": source.kind,
        "config": source.config,
        "secrets_set": sorted(source.secrets),
        "schedule": None if source.schedule is None else source.schedule.as_json(),
        "enabled": source.enabled,
        "disabled_reason": source.disabled_reason,
        "metadata": source.metadata,
        "title_template": source.title_template,
        "limits": attrs.asdict(source.limits),
        "last_poll_at": _iso(source.last_poll_at),
        "last_success_at": _iso(source.last_success_at),
        "last_error": source.last_error,
        "consecutive_failures": source.consecutive_failures,
        "next_poll_at": _iso(source.next_poll_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def _schedule(source: Source) -> str:
    if source.schedule is None:
        return "(push)"
    if source.schedule.interval_seconds is not None:
        return f"every {source.schedule.interval_seconds:g}s"
    return f"cron {source.schedule.cron} ({source.schedule.timezone})"


async def _list(args: argparse.Namespace, pool: Pool) -> int:
    sources = await _all(pool)
    if args.json:
        print(json.dumps([_view(s) for s in sources], indent=2))
        return EXIT_OK
    rows = [("ID", "NAME", "KIND", "ENABLED", "SCHEDULE", "LAST SUCCESS", "FAILURES", "ERROR")]
    for s in sources:
        rows.append(
            (
                str(s.id), s.name, s.kind, "yes" if s.enabled else "no", _schedule(s),
                _iso(s.last_success_at) or "-", str(s.consecutive_failures),
                (s.disabled_reason or s.last_error or "")[:60],
            )
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


async def _show(args: argparse.Namespace, pool: Pool) -> int:
    source = await _find(pool, args.source)
    if source is None:
        return _missing(args.source)
    polls = await list_polls(pool, source.id, limit=10)
    view = _view(source)
    view["polls"] = [
        {**attrs.asdict(p), "started_at": _iso(p.started_at), "finished_at": _iso(p.finished_at)}
        for p in polls.items
    ]
    print(json.dumps(view, indent=2))
    return EXIT_OK


async def _poll(args: argparse.Namespace, pool: Pool) -> int:
    from daemon.composition import sources_config

    source = await _find(pool, args.source)
    if source is None:
        return _missing(args.source)
    if args.here:
        result = await run_poll(pool, sources_config(args.components), source.id, trigger="manual")
        print(json.dumps(attrs.asdict(result)))
        return EXIT_OK if result.error is None and result.skipped is None else EXIT_NOT_FOUND
    try:
        job_id = await request_poll(pool, source.id, context=AuditContext.system())
    except SourceError as exc:
        print(f"triaged: {exc.message}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(f"poll of source {source.id} ({source.name}) enqueued: job {job_id}")
    return EXIT_OK


async def _enable(args: argparse.Namespace, pool: Pool) -> int:
    source = await _find(pool, args.source)
    if source is None:
        return _missing(args.source)
    await set_source_enabled(
        pool, source.id, args.enabled, context=AuditContext.system(), reason=args.reason
    )
    print(f"source {source.id} ({source.name}) {'enabled' if args.enabled else 'disabled'}")
    return EXIT_OK


def _missing(key: str) -> int:
    print(f"triaged: no source {key!r}", file=sys.stderr)
    return EXIT_NOT_FOUND
