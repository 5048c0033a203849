"""``triaged cases``: list, show and work cases from the operator's shell.

::

    triaged cases list [--status S] [--severity S] [--assignee ID|none] [--overdue]
                       [--level N] [--category C] [--query TEXT] [--limit N] [--json]
    triaged cases show ID [--json]
    triaged cases ack ID [--version N]
    triaged cases assign ID (--user-id N | --nobody) [--version N]
    triaged cases resolve ID --resolution R [--note TEXT] [--version N]
    triaged cases reopen ID [--note TEXT] [--version N]

The same rules as the API (:mod:`daemon.modules.cases`): the same transitions, the same
history and audit events. ``--version`` is the If-Match of the API (refused if the case
is at another version); without it the change applies to the version read. The history
names the actor ``cli:<OS user>``; audit events have the actor ``system`` and the
request id ``cli``.

Exit status: 0 done; 1 refused (no such case, a transition the state does not allow, a
stale version, an invalid resolution or assignee); 2 bad input.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from daemon.modules.audit import AuditContext
from daemon.modules.cases import (
    Case,
    CaseAction,
    CaseFilter,
    CaseWorkConfig,
    Request,
    act_on_case,
    get_case,
    list_case_events,
    list_cases,
    list_comments,
)
from daemon.shared.errors import DocumentError, ValidationFailed

if TYPE_CHECKING:
    from daemon.shared.db.pool import Pool

EXIT_OK = 0
EXIT_REFUSED = 1
CLI_CONTEXT = AuditContext.system(request_id="cli")
_LIST_MAX = 1000


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``cases`` and its actions ``list``, ``show``, ``ack``, ``assign``,
    ``resolve``, ``reopen``."""
    cases = commands.add_parser("cases", help="list, show, acknowledge, assign, resolve cases")
    actions = cases.add_subparsers(dest="cases_action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="list cases, newest first")
    listing.add_argument("--status", choices=["open", "acknowledged", "resolved", "closed"])
    listing.add_argument("--severity", choices=["low", "medium", "high", "critical"])
    listing.add_argument("--assignee", type=_assignee, help="a user id, or none")
    listing.add_argument("--overdue", action="store_true", help="open past the deadline")
    listing.add_argument("--level", type=_count, help="escalation level")
    listing.add_argument("--category")
    listing.add_argument("--query", help="text in the title, reason or resolution note")
    listing.add_argument("--limit", type=_positive, default=50, help="at most 1000")
    listing.add_argument("--json", action="store_true", help="print JSON, not a table")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="a case with its history and comments")
    show.add_argument("case_id", type=_positive)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)

    ack = actions.add_parser("ack", help="acknowledge an open case (stops escalation)")
    _case_and_version(ack)
    ack.set_defaults(handler=_act, action=CaseAction.ACKNOWLEDGE)

    assign = actions.add_parser("assign", help="assign a case to an analyst, or nobody")
    _case_and_version(assign)
    who = assign.add_mutually_exclusive_group(required=True)
    who.add_argument("--user-id", type=_positive)
    who.add_argument("--nobody", action="store_true")
    assign.set_defaults(handler=_act, action=CaseAction.ASSIGN)

    resolve = actions.add_parser("resolve", help="resolve a case")
    _case_and_version(resolve)
    resolve.add_argument("--resolution", required=True)
    resolve.add_argument("--note")
    resolve.set_defaults(handler=_act, action=CaseAction.RESOLVE)

    reopen = actions.add_parser("reopen", help="reopen a case (restarts escalation)")
    _case_and_version(reopen)
    reopen.add_argument("--note")
    reopen.set_defaults(handler=_act, action=CaseAction.REOPEN)


def _case_and_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("case_id", type=_positive)
    parser.add_argument("--version", type=_positive, help="act only on this version")


def _positive(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _count(text: str) -> int:
    return 0 if text == "0" else _positive(text)


def _assignee(text: str) -> str:
    return text if text == "none" else str(_positive(text))


def actor() -> str:
    """``cli:<OS user>`` (``cli`` when the OS cannot say)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"triaged cases {args.cases_action}: error: {message}", file=sys.stderr)
    return EXIT_REFUSED


async def _list(args: argparse.Namespace, pool: Pool) -> int:
    case_filter = CaseFilter(
        status=args.status,
        severity=args.severity,
        assignee_user_id=None if args.assignee in (None, "none") else int(args.assignee),
        unassigned=args.assignee == "none",
        overdue=True if args.overdue else None,
        escalation_level=args.level,
        category=args.category,
        text=args.query,
    )
    async with pool.connection() as conn:
        page = await list_cases(conn, case_filter, limit=min(args.limit, _LIST_MAX))
    if args.json:
        print(json.dumps([case_record(c) for c in page.items], indent=2))
    elif not page.items:
        print("no cases")
    else:
        rows = [("ID", "STATUS", "SEVERITY", "LEVEL", "DUE", "ASSIGNEE", "TITLE")]
        rows += [
            (
                str(c.id),
                c.status + (" (overdue)" if c.overdue else ""),
                c.severity,
                str(c.escalation_level),
                _time(c.sla_due_at),
                "-" if c.assignee_user_id is None else f"user:{c.assignee_user_id}",
                c.document_title[:60],
            )
            for c in page.items
        ]
        _table(rows)
    return EXIT_OK


async def _show(args: argparse.Namespace, pool: Pool) -> int:
    try:
        async with pool.connection() as conn:
            case = await get_case(conn, args.case_id)
            events = (await list_case_events(conn, case.id, limit=_LIST_MAX)).items
            comments = (await list_comments(conn, case.id, limit=_LIST_MAX)).items
    except DocumentError as exc:
        return _fail(args, exc.message)
    if args.json:
        record = case_record(case)
        record["events"] = [
            {"kind": e.kind, "actor": e.actor, "at": e.at.isoformat(), "detail": e.detail}
            for e in events
        ]
        record["comments"] = [
            {"author": c.author, "at": c.created_at.isoformat(), "body": c.body} for c in comments
        ]
        print(json.dumps(record, indent=2))
        return EXIT_OK
    for name, value in case_record(case).items():
        print(f"{name}: {value}")
    print("history:")
    for e in events:
        detail = json.dumps(e.detail, sort_keys=True) if e.detail else ""
        print(f"  {_time(e.at)}  {e.kind:<16} {e.actor:<20} {detail}".rstrip())
    if comments:
        print("comments:")
        for c in comments:
            print(f"  {_time(c.created_at)}  {c.author}: {c.body}")
    return EXIT_OK


async def _act(args: argparse.Namespace, pool: Pool) -> int:
    action: CaseAction = args.action
    request = Request(
        action=action,
        user_id=getattr(args, "user_id", None),
        resolution=getattr(args, "resolution", None),
        note=getattr(args, "note", None),
    )
    config: CaseWorkConfig = args.components.cases
    try:
        async with pool.transaction() as conn:
            case = await act_on_case(
                conn,
                args.case_id,
                request,
                config=config,
                context=CLI_CONTEXT,
                expected_version=args.version,
                actor=actor(),
            )
    except ValidationFailed as exc:
        return _fail(args, "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors))
    except DocumentError as exc:
        return _fail(args, exc.message)
    assignee = "nobody" if case.assignee_user_id is None else f"user {case.assignee_user_id}"
    print(f"case {case.id}: {case.status}, assigned to {assignee} (version {case.version})")
    return EXIT_OK


def case_record(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "document_id": case.document_id,
        "title": case.document_title,
        "status": case.status,
        "severity": case.severity,
        "category": case.category,
        "sla_due_at": _iso(case.sla_due_at),
        "overdue": case.overdue,
        "assignee_user_id": case.assignee_user_id,
        "escalation_level": case.escalation_level,
        "escalation_due_at": _iso(case.escalation_due_at),
        "resolution": case.resolution,
        "resolution_note": case.resolution_note,
        "version": case.version,
        "created_at": _iso(case.created_at),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
