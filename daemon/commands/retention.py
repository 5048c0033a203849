"""``triaged retention`` and ``triaged audit verify``: what the purge would delete, a
purge run by hand, and the audit log's hash chain checked.

::

    triaged retention status [--json]     what is due now, per kind (deletes nothing)
    triaged retention run --dry-run       the same, worded as what a run would delete
    triaged retention run [--json]        purge now (continues an interrupted command run)
    triaged audit verify [--json]         check the audit log's chain from its checkpoint

Exit status: 0 done (verify: the chain holds); 1 the chain is broken (the first broken
event is named) or the command failed; 2 bad arguments.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from daemon.modules.audit import checkpoint_key_warning, verify
from daemon.modules.retention import RUN_ORDER, due, run_purge

if TYPE_CHECKING:
    import argparse

    from daemon.shared.db.pool import Pool

EXIT_OK = 0
EXIT_BROKEN = 1


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``retention status``, ``retention run`` and ``audit verify``."""
    retention = commands.add_parser(
        "retention", help="show what the retention purge would delete, or run it now"
    )
    actions = retention.add_subparsers(dest="retention_action", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="periods, and what is due now per kind")
    status.add_argument("--json", action="store_true", help="print JSON, not a table")
    status.set_defaults(handler=_status, dry_run=True)
    run = actions.add_parser("run", help="purge what is past its period and not held, now")
    run.add_argument(
        "--dry-run", action="store_true", help="print what a run would delete; delete nothing"
    )
    run.add_argument("--json", action="store_true", help="print JSON, not a table")
    run.set_defaults(handler=_run)

    audit = commands.add_parser("audit", help="the audit log")
    audit_actions = audit.add_subparsers(dest="audit_action", required=True, metavar="ACTION")
    check = audit_actions.add_parser(
        "verify", help="check the audit log's hash chain; name the first broken event"
    )
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(handler=_verify)


async def _status(args: argparse.Namespace, pool: Pool) -> int:
    config = args.components.purge
    counts = await due(pool, config)
    if args.json:
        print(json.dumps({
            kind.value: {
                "period_days": config.periods.of(kind).total_seconds() / 86_400,
                "due": c.due, "held": c.held, "kept_by_cases": c.kept_by_cases,
            }
            for kind, c in counts.items()
        }, indent=2))  # fmt: skip
        return EXIT_OK
    verb = "would delete" if args.dry_run and args.retention_action == "run" else "due"
    print(f"{'KIND':<20} {'PERIOD':>10} {verb.upper():>13} {'HELD':>8} {'KEPT BY CASES':>14}")
    for kind in RUN_ORDER:
        c = counts[kind]
        days = config.periods.of(kind).total_seconds() / 86_400
        print(f"{kind.value:<20} {days:>9g}d {c.due:>13} {c.held:>8} {c.kept_by_cases:>14}")
    return EXIT_OK


async def _run(args: argparse.Namespace, pool: Pool) -> int:
    if args.dry_run:
        return await _status(args, pool)
    report = await run_purge(pool, args.components.purge)
    if args.json:
        print(json.dumps({"run_id": report.id, "report": report.report}, indent=2))
    else:
        print(f"retention run {report.id}:")
        for line in report.lines():
            print(f"  {line}")
    return EXIT_OK


async def _verify(args: argparse.Namespace, pool: Pool) -> int:
    async with pool.transaction() as conn:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        result = await verify(conn, args.components.purge.checkpoint_key)
    warning = checkpoint_key_warning(args.components.purge.checkpoint_key)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    view: dict[str, Any] = {
        "ok": result.ok,
        "events": result.events,
        "checkpoint_id": result.checkpoint_id,
        "head_seq": result.head_seq,
        "head_hash": result.head_hash.hex(),
        "problem": result.problem,
        "event_id": result.event_id,
        "seq": result.seq,
        "warning": warning,
    }
    if args.json:
        print(json.dumps(view, indent=2))
    elif result.ok:
        start = (
            "the start" if result.checkpoint_id is None else f"checkpoint {result.checkpoint_id}"
        )
        print(
            f"audit log intact: {result.events} event(s) from {start} to position "
            f"{result.head_seq}, head hash {result.head_hash.hex()}"
        )
    else:
        print(f"audit log BROKEN at event {result.event_id}: {result.problem}")
    return EXIT_OK if result.ok else EXIT_BROKEN
