"""Case work in the database: acknowledge, assign, resolve, reopen, comment; the history
and comments of a case; the counts the metrics read.

Every change runs in the caller's transaction and writes, in it, the case row, the
case's history event (:func:`record_case_event`) and the audit event: all or nothing.
The version check (If-Match) is the ``UPDATE``'s ``WHERE version = ...``: two analysts
acting on the same version, one wins and the other gets :class:`StaleCaseVersion`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from daemon.modules.analysis import Severity
from daemon.modules.audit import ActorType, AuditContext, record
from daemon.modules.auth import Role
from daemon.modules.cases.errors import StaleCaseVersion
from daemon.modules.cases.lifecycle import CaseAction, CaseState, Request, plan
from daemon.modules.cases.store import SQL, Case, get_case, record_case_event
from daemon.shared.errors import ValidationFailed
from daemon.shared.pagination import Page, decode_cursor, fetch_limit, page_of

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import timedelta

    from daemon.shared.db.psycopg_trio import TrioConnection

MAX_COMMENT_CHARS = 10_000
# Without If-Match, a change made between our read and our write is retried this often.
_ATTEMPTS = 3
_ASSIGNABLE = frozenset({Role.ADMIN.value, Role.ANALYST.value})


@attrs.frozen(kw_only=True)
class CaseWorkConfig:
    """``resolutions`` a case may be resolved with; ``sla`` per severity (the routing
    rules'), from which a reopened case's ladder restarts."""

    resolutions: tuple[str, ...]
    sla: Mapping[Severity, timedelta]


@attrs.frozen(kw_only=True)
class Comment:
    id: int
    case_id: int
    author_user_id: int | None
    author: str
    body: str
    created_at: datetime


@attrs.frozen(kw_only=True)
class CaseEvent:
    id: int
    case_id: int
    kind: str
    actor: str
    at: datetime
    detail: dict[str, Any]


def actor_of(context: AuditContext) -> str:
    """How the history names who acted: ``user:3``, ``api_key:2``, ``system``."""
    actor = context.actor
    if actor.type in (ActorType.USER, ActorType.API_KEY) and actor.id is not None:
        return f"{actor.type.value}:{actor.id}"
    return actor.type.value


async def act_on_case(
    conn: TrioConnection,
    case_id: int,
    request: Request,
    *,
    config: CaseWorkConfig,
    context: AuditContext,
    expected_version: int | None,
    actor: str | None = None,
    now: datetime | None = None,
) -> Case:
    """Apply one lifecycle action (:mod:`daemon.modules.cases.lifecycle`) in the
    caller's transaction, with its history event (``actor``, by default
    :func:`actor_of` ``context``) and audit event (``case.<event>``). The case after.

    ``expected_version`` (If-Match): the change is made only on that version. None (the
    CLI): on the version read, retried if another change slips in between.

    Raises:
        CaseNotFound.
        StaleCaseVersion: the case is not (or no longer) at ``expected_version``.
        InvalidCaseTransition: the case's status does not allow the action.
        ValidationFailed: an assignee who is not an active analyst or admin, a
            resolution not configured, a note too long (names the field).
    """
    now = now or datetime.now(UTC)
    if request.action is CaseAction.ASSIGN and request.user_id is not None:
        await _check_assignable(conn, request.user_id)
    for _ in range(_ATTEMPTS):
        case = await get_case(conn, case_id)
        if expected_version is not None and case.version != expected_version:
            raise StaleCaseVersion(expected_version, case.version)
        change = plan(
            CaseState(
                status=case.status,
                assignee_user_id=case.assignee_user_id,
                acknowledged_at=case.acknowledged_at,
            ),
            request,
            now=now,
            sla=config.sla[Severity.parse(case.severity)],
            resolutions=config.resolutions,
        )
        columns = {
            "status": case.status,
            "assignee_user_id": case.assignee_user_id,
            "resolution": case.resolution,
            "resolution_note": case.resolution_note,
            "acknowledged_at": case.acknowledged_at,
            "resolved_at": case.resolved_at,
            "escalation_level": case.escalation_level,
            "escalation_due_at": case.escalation_due_at,
        } | change.columns
        row = await (
            await conn.execute(
                SQL["update_case_work"], columns | {"id": case_id, "version": case.version}
            )
        ).fetchone()
        if row is not None:
            break
        if expected_version is not None:
            current = await get_case(conn, case_id)
            raise StaleCaseVersion(expected_version, current.version)
    else:
        raise StaleCaseVersion(None, (await get_case(conn, case_id)).version)
    detail = change.detail | {"version": int(row[0])}
    await record_case_event(conn, case_id, change.event, actor or actor_of(context), detail)
    await record(
        conn, context, f"case.{change.event}", target_type="case", target_id=case_id,
        details=detail,
    )  # fmt: skip
    return await get_case(conn, case_id)


async def _check_assignable(conn: TrioConnection, user_id: int) -> None:
    row = await (await conn.execute(SQL["assignable_user"], {"id": user_id})).fetchone()
    if row is None or not row[1] or row[0] not in _ASSIGNABLE:
        raise ValidationFailed([{"field": "user_id", "message": "not an active analyst or admin"}])


async def add_comment(
    conn: TrioConnection,
    case_id: int,
    body: str,
    *,
    context: AuditContext,
    actor: str | None = None,
) -> Comment:
    """Comment on a case (any state; no If-Match: comments only add) in the caller's
    transaction, with its ``commented`` event and audit event.

    Raises:
        CaseNotFound.
        ValidationFailed: an empty or too long ``body``.
    """
    text = body.strip()
    if not text or len(text) > MAX_COMMENT_CHARS:
        raise ValidationFailed(
            [{"field": "body", "message": f"1 to {MAX_COMMENT_CHARS} characters"}]
        )
    await get_case(conn, case_id)
    who = actor or actor_of(context)
    user_id = context.actor.id if context.actor.type is ActorType.USER else None
    row = await (
        await conn.execute(
            SQL["add_comment"],
            {"case_id": case_id, "author_user_id": user_id, "author": who, "body": text},
        )
    ).fetchone()
    assert row is not None
    comment = Comment(
        id=row[0], case_id=row[1], author_user_id=row[2], author=row[3], body=row[4],
        created_at=row[5],
    )  # fmt: skip
    await record_case_event(conn, case_id, "commented", who, {"comment_id": comment.id})
    await record(
        conn, context, "case.commented", target_type="case", target_id=case_id,
        details={"comment_id": comment.id},
    )  # fmt: skip
    return comment


async def list_comments(
    conn: TrioConnection, case_id: int, *, cursor: str | None = None, limit: int = 50
) -> Page[Comment]:
    """A case's comments, oldest first. Raises CaseNotFound, ValidationFailed (cursor)."""
    await get_case(conn, case_id)
    rows = await _page(conn, "list_comments", case_id, cursor, limit)
    comments = [
        Comment(id=r[0], case_id=r[1], author_user_id=r[2], author=r[3], body=r[4],
                created_at=r[5])
        for r in rows
    ]  # fmt: skip
    return page_of(comments, limit, key=lambda c: c.id)


async def list_case_events(
    conn: TrioConnection, case_id: int, *, cursor: str | None = None, limit: int = 100
) -> Page[CaseEvent]:
    """A case's history, oldest first. Raises CaseNotFound, ValidationFailed (cursor)."""
    await get_case(conn, case_id)
    rows = await _page(conn, "list_case_events", case_id, cursor, limit)
    events = [
        CaseEvent(id=r[0], case_id=r[1], kind=r[2], actor=r[3], at=r[4], detail=r[5]) for r in rows
    ]
    return page_of(events, limit, key=lambda e: e.id)


async def _page(
    conn: TrioConnection, query: str, case_id: int, cursor: str | None, limit: int
) -> Sequence[tuple[Any, ...]]:
    params = {"case_id": case_id, "after_id": decode_cursor(cursor), "limit": fetch_limit(limit)}
    return await (await conn.execute(SQL[query], params)).fetchall()


@attrs.frozen(kw_only=True)
class CaseCounts:
    """What the metrics scrape reads: cases not resolved by (status, severity, level),
    those open past their deadline by severity, and the time-to-acknowledge histogram
    (non-cumulative counts per bucket of ``bounds``, the last one past them, and the sum
    of seconds)."""

    unresolved: dict[tuple[str, str, int], int]
    overdue: dict[str, int]
    bounds: tuple[float, ...]
    acknowledge_buckets: list[int]
    acknowledge_seconds: float


async def case_counts(conn: TrioConnection, bounds: Sequence[float]) -> CaseCounts:
    """Read-only; two aggregate queries over the cases."""
    unresolved: dict[tuple[str, str, int], int] = {}
    overdue: dict[str, int] = {}
    for status, severity, level, count, late in await (
        await conn.execute(SQL["case_counts"])
    ).fetchall():
        unresolved[(status, severity, int(level))] = int(count)
        overdue[severity] = overdue.get(severity, 0) + int(late)
    ordered = tuple(sorted(float(b) for b in bounds))
    buckets = [0] * (len(ordered) + 1)
    total = 0.0
    for bucket, count, seconds in await (
        await conn.execute(SQL["time_to_acknowledge"], {"bounds": list(ordered)})
    ).fetchall():
        buckets[min(max(int(bucket), 0), len(ordered))] += int(count)
        total += float(seconds or 0.0)
    return CaseCounts(
        unresolved=unresolved,
        overdue=overdue,
        bounds=ordered,
        acknowledge_buckets=buckets,
        acknowledge_seconds=total,
    )
