"""``triaged jobs`` and ``triaged queues``: inspect and operate the job queue.

::

    triaged jobs list [--queue Q] [--state S] [--limit N] [--before-id ID] [--json]
    triaged jobs show ID [--json]
    triaged jobs retry ID
    triaged jobs cancel ID
    triaged queues [--json]
    triaged queues pause Q | resume Q
    triaged queues set Q [--global-concurrency N] [--max-attempts N] [--backoff-base S]
                         [--backoff-max S] [--timeout S] [--dead-letter Q]
                         [--retain-completed S] [--retain-failed S]

Results go to stdout: aligned tables for people, ``--json`` for scripts. Exit status:
0 done; 1 the job does not exist or is not in a state that allows the operation (one
line on stderr); 2 invalid arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from daemon.queue import (
    MAX_LIST_LIMIT,
    JobState,
    QueueError,
    cancel_job,
    check_queue_name,
    configure_queue,
    get_job,
    list_jobs,
    pause_queue,
    queue_stats,
    resume_queue,
    retry_job,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from daemon.shared.db.pool import Pool

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_ERROR_WIDTH = 60


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``jobs`` and ``queues``."""
    jobs = commands.add_parser("jobs", help="list, show, retry and cancel jobs")
    actions = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="jobs, newest first")
    listing.add_argument("--queue", type=_queue_name, help="only this queue")
    listing.add_argument(
        "--state", choices=[s.value for s in JobState], help="only jobs in this state"
    )
    listing.add_argument(
        "--limit",
        type=_limit,
        default=50,
        help=f"at most this many (1 to {MAX_LIST_LIMIT}; default 50)",
    )
    listing.add_argument(
        "--before-id",
        type=_job_id,
        metavar="ID",
        help="only jobs with a smaller id (the next page)",
    )
    listing.add_argument("--json", action="store_true", help="a JSON array")
    listing.set_defaults(handler=_jobs_list)

    show = actions.add_parser("show", help="one job in full")
    show.add_argument("id", type=_job_id)
    show.add_argument("--json", action="store_true", help="a JSON object")
    show.set_defaults(handler=_jobs_show)

    retry = actions.add_parser("retry", help="run a failed or cancelled job again")
    retry.add_argument("id", type=_job_id)
    retry.set_defaults(handler=_jobs_retry)

    cancel = actions.add_parser("cancel", help="cancel a waiting or running job")
    cancel.add_argument("id", type=_job_id)
    cancel.set_defaults(handler=_jobs_cancel)

    queues = commands.add_parser(
        "queues",
        help="queue statistics; pause, resume and configure queues",
        description="Without an action: every queue with its jobs per state, the age of "
        "its oldest waiting job and its policy.",
    )
    queues.add_argument("--json", action="store_true", help="a JSON array")
    queues.set_defaults(handler=_queues_stats)
    queue_actions = queues.add_subparsers(dest="queues_command", metavar="ACTION")

    pause = queue_actions.add_parser("pause", help="stop claims (running jobs go on)")
    pause.add_argument("queue", type=_queue_name)
    pause.set_defaults(handler=_queues_pause)

    resume = queue_actions.add_parser("resume", help="let claims resume")
    resume.add_argument("queue", type=_queue_name)
    resume.set_defaults(handler=_queues_resume)

    configure = queue_actions.add_parser(
        "set",
        help="change a queue's policy",
        argument_default=argparse.SUPPRESS,  # options not given stay out of the namespace
        description="Only the options given change. 'none' clears an option that may be "
        "empty (--global-concurrency, --timeout, --dead-letter, --retain-*).",
    )
    configure.add_argument("queue", type=_queue_name)
    configure.add_argument(
        "--global-concurrency",
        type=_or_none(_positive_int),
        metavar="N",
        help="most jobs active at once, all workers together",
    )
    configure.add_argument(
        "--max-attempts",
        type=_positive_int,
        metavar="N",
        help="default attempts of jobs enqueued from now on",
    )
    configure.add_argument(
        "--backoff-base",
        type=_seconds(zero=True),
        metavar="S",
        help="default backoff base (seconds)",
    )
    configure.add_argument(
        "--backoff-max", type=_seconds(zero=True), metavar="S", help="default backoff cap (seconds)"
    )
    configure.add_argument(
        "--timeout",
        type=_or_none(_seconds(zero=False)),
        metavar="S",
        help="default per-attempt timeout (seconds)",
    )
    configure.add_argument(
        "--dead-letter",
        type=_or_none(_queue_name),
        metavar="Q",
        help="queue that gets a copy of jobs that fail for good",
    )
    configure.add_argument(
        "--retain-completed",
        type=_or_none(_seconds(zero=True)),
        metavar="S",
        help="keep completed jobs this long (seconds)",
    )
    configure.add_argument(
        "--retain-failed",
        type=_or_none(_seconds(zero=True)),
        metavar="S",
        help="keep failed and cancelled jobs this long",
    )
    configure.set_defaults(handler=_queues_set)


# -- argument types (argparse turns their ValueError/ArgumentTypeError into exit 2) -----


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _job_id(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a job id: {text}")
    return value


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _limit(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= MAX_LIST_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIST_LIMIT}")
    return value


def _queue_name(text: str) -> str:
    try:
        return check_queue_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _seconds(*, zero: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(
                f"must be a number of seconds {'>= 0' if zero else '> 0'}: {text}"
            )
        return value

    return parse


def _or_none(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_none(text: str) -> Any:
        return None if text.lower() == "none" else parse(text)

    return parse_or_none


# -- handlers ----------------------------------------------------------------------------


async def _jobs_list(args: argparse.Namespace, pool: Pool) -> int:
    async with pool.connection() as conn:
        before = None if args.before_id is None else str(args.before_id)
        page = await list_jobs(
            conn, queue=args.queue, state=args.state, cursor=before, limit=args.limit
        )
    jobs = page.items
    more = page.next_cursor is not None
    if args.json:
        _print_json([_jsonable(job) for job in jobs])
        return EXIT_OK
    if not jobs:
        print("(no jobs)")
        return EXIT_OK
    rows = [
        [
            str(job.id),
            job.queue,
            job.state.value,
            f"{job.attempts}/{job.max_attempts}",
            str(job.priority),
            _when(job.run_at),
            _when(job.finished_at),
            _clip(job.last_error or ""),
        ]
        for job in jobs
    ]
    _print_table(
        ["ID", "QUEUE", "STATE", "ATTEMPTS", "PRIO", "RUN AT", "FINISHED", "LAST ERROR"],
        rows,
        right={0, 3, 4},
    )
    if more:
        print(f"(more: --before-id {jobs[-1].id})")
    return EXIT_OK


async def _jobs_show(args: argparse.Namespace, pool: Pool) -> int:
    async with pool.connection() as conn:
        try:
            job = await get_job(conn, args.id)
        except QueueError as exc:
            return _failed(exc)
    if args.json:
        _print_json(_jsonable(job))
        return EXIT_OK
    for key, value in _jsonable(job).items():
        if key in ("payload", "result") and value is not None:
            text = json.dumps(value, indent=2, sort_keys=True).replace("\n", "\n  ")
            print(f"{key}:\n  {text}")
        else:
            text = "-" if value is None else str(value).replace("\n", "\n  ")
            print(f"{key}: {text}")
    return EXIT_OK


async def _jobs_retry(args: argparse.Namespace, pool: Pool) -> int:
    try:
        async with pool.transaction() as conn:
            await retry_job(conn, args.id)
    except QueueError as exc:
        return _failed(exc)
    print(f"job {args.id} will run again (state created, attempts reset)")
    return EXIT_OK


async def _jobs_cancel(args: argparse.Namespace, pool: Pool) -> int:
    try:
        async with pool.transaction() as conn:
            before = await cancel_job(conn, args.id)
    except QueueError as exc:
        return _failed(exc)
    note = (
        "; its worker stops the handler at its next heartbeat" if before is JobState.ACTIVE else ""
    )
    print(f"job {args.id} cancelled (was {before.value}{note})")
    return EXIT_OK


async def _queues_stats(args: argparse.Namespace, pool: Pool) -> int:
    async with pool.connection() as conn:
        stats = await queue_stats(conn)
    if args.json:
        _print_json([_jsonable(s) for s in stats])
        return EXIT_OK
    if not stats:
        print("(no queues)")
        return EXIT_OK
    rows = []
    for s in stats:
        p = s.policy
        rows.append(
            [
                s.name,
                "yes" if s.paused else "no",
                *(str(s.count(st)) for st in JobState),
                _age(s.oldest_available_seconds),
                "-" if p.global_concurrency is None else str(p.global_concurrency),
                str(p.max_attempts),
                f"{p.backoff_base_seconds:g}/{p.backoff_max_seconds:g}",
                _num(p.timeout_seconds),
                p.dead_letter_queue or "-",
                f"{_num(p.retain_completed_seconds)}/{_num(p.retain_failed_seconds)}",
            ]
        )
    _print_table(
        [
            "QUEUE",
            "PAUSED",
            *(st.value.upper() for st in JobState),
            "OLDEST",
            "CAP",
            "MAX ATT",
            "BACKOFF S",
            "TIMEOUT S",
            "DEAD LETTER",
            "RETAIN S (OK/FAIL)",
        ],
        rows,
        right=set(range(2, 10)),
    )
    return EXIT_OK


async def _queues_pause(args: argparse.Namespace, pool: Pool) -> int:
    async with pool.transaction() as conn:
        await pause_queue(conn, args.queue)
    print(f"queue {args.queue} paused (running jobs go on)")
    return EXIT_OK


async def _queues_resume(args: argparse.Namespace, pool: Pool) -> int:
    async with pool.transaction() as conn:
        await resume_queue(conn, args.queue)
    print(f"queue {args.queue} resumed")
    return EXIT_OK


_SET_OPTIONS = {  # argparse dest -> configure_queue keyword
    "global_concurrency": "global_concurrency",
    "max_attempts": "max_attempts",
    "backoff_base": "backoff_base_seconds",
    "backoff_max": "backoff_max_seconds",
    "timeout": "timeout_seconds",
    "dead_letter": "dead_letter_queue",
    "retain_completed": "retain_completed_seconds",
    "retain_failed": "retain_failed_seconds",
}


async def _queues_set(args: argparse.Namespace, pool: Pool) -> int:
    # The options default to SUPPRESS: only those given are in the namespace (None for
    # "none", which clears the field).
    given = {
        keyword: getattr(args, dest)
        for dest, keyword in _SET_OPTIONS.items()
        if hasattr(args, dest)
    }
    try:
        async with pool.transaction() as conn:
            policy = await configure_queue(conn, args.queue, **given)
    except ValueError as exc:
        print(f"triaged: {exc}", file=sys.stderr)
        return EXIT_USAGE
    changed = ", ".join(f"{k}={v}" for k, v in given.items()) or "nothing changed"
    print(f"queue {args.queue}: {changed}")
    print(json.dumps(asdict(policy), sort_keys=True))
    return EXIT_OK


# -- output ------------------------------------------------------------------------------


def _failed(exc: QueueError) -> int:
    print(f"triaged: {exc.message}", file=sys.stderr)
    return EXIT_FAILED


def _jsonable(value: Any) -> Any:
    """attrs instances, dataclasses, enums and datetimes as JSON-compatible values."""
    if attrs.has(type(value)):
        return {f.name: _jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, JobState):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _print_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, right: Collection[int] = ()
) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _clip(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= _ERROR_WIDTH else line[: _ERROR_WIDTH - 1] + "…"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
