"""The enqueue statements: jobs inserted one at a time, by INSERT over a JSON array or
arrays, or by COPY. One of the queue's stores (see :mod:`daemon.queue.store`).

Each function takes the caller's connection and runs in its transaction; none commits.
Defaults (max_attempts, the NOTIFY channel) are the database's functions, applied by the
statements: see ``docs/queue.md`` (Schema).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from daemon.queue.jobs import Enqueued
from daemon.queue.store import SQL

if TYPE_CHECKING:
    from collections.abc import Sequence

    from daemon.queue.jobs import JobSpec
    from daemon.shared.db.psycopg_trio import TrioConnection


def _job_params(spec: JobSpec) -> dict[str, Any]:
    return {
        "queue": spec.queue,
        "payload": Jsonb(dict(spec.payload)),
        "priority": spec.priority,
        "run_at": spec.run_at,
        "max_attempts": spec.max_attempts,
        "backoff_base": spec.backoff.base_seconds if spec.backoff else None,
        "backoff_max": spec.backoff.max_seconds if spec.backoff else None,
        "timeout": spec.timeout,
        "dedup_key": spec.dedup_key,
    }


async def insert_job(conn: TrioConnection, spec: JobSpec) -> Enqueued | None:
    """Insert one job (notifying workers when it is due); None on a dedup race."""
    params = _job_params(spec)
    if spec.dedup_key is None:
        del params["dedup_key"]
        cursor = await conn.execute(SQL["insert_job_plain"], params)
    else:
        cursor = await conn.execute(SQL["insert_job"], params)
    row = await cursor.fetchone()
    return None if row is None else Enqueued(id=row[0], created=row[1])


async def insert_jobs(conn: TrioConnection, specs: Sequence[JobSpec]) -> list[int]:
    """Insert many jobs; the ids of those created, in order (dedup skips others).

    Without dedup keys, a few rows (with finite numbers) go in by one ``INSERT`` over a
    JSON array that notifies too, more by COPY with ids reserved from the sequence
    first (about 3x faster per row, but three round trips); with any, by one
    ``INSERT … ON CONFLICT`` over arrays.
    """
    if all(spec.dedup_key is None for spec in specs):
        if len(specs) <= _FEW_JOBS and all(_finite(spec) for spec in specs):
            cursor = await conn.execute(SQL["insert_jobs_plain"], {"jobs": _jobs_json(specs)})
            return [row[0] for row in await cursor.fetchall()]
        return await _copy_jobs(conn, specs)
    params = _array_params(specs)
    cursor = await conn.execute(SQL["insert_jobs"], params)
    ids = [row[0] for row in await cursor.fetchall()]
    await conn.execute(SQL["notify_queues"], {"queues": sorted(set(params["queues"]))})
    return ids


def _finite(spec: JobSpec) -> bool:
    """Whether the spec's numbers are all finite (JSON has no infinity)."""
    numbers = [spec.timeout]
    if spec.backoff is not None:
        numbers += [spec.backoff.base_seconds, spec.backoff.max_seconds]
    return all(n is None or math.isfinite(n) for n in numbers)


def _jobs_json(specs: Sequence[JobSpec]) -> Jsonb:
    """The ``insert_jobs_plain`` rows; keys left out are NULL."""
    rows = []
    for n, spec in enumerate(specs):
        row: dict[str, Any] = {"n": n, "queue": spec.queue, "payload": dict(spec.payload)}
        if spec.priority:
            row["priority"] = spec.priority
        if spec.run_at is not None:
            row["run_at"] = spec.run_at.isoformat()
        if spec.max_attempts is not None:
            row["max_attempts"] = spec.max_attempts
        if spec.backoff is not None:
            row["backoff_base"] = spec.backoff.base_seconds
            row["backoff_max"] = spec.backoff.max_seconds
        if spec.timeout is not None:
            row["timeout"] = spec.timeout
        rows.append(row)
    return Jsonb(rows)


def _array_params(specs: Sequence[JobSpec]) -> dict[str, list[Any]]:
    params: dict[str, list[Any]] = {
        "queues": [],
        "payloads": [],
        "priorities": [],
        "run_ats": [],
        "max_attempts": [],
        "backoff_bases": [],
        "backoff_maxes": [],
        "timeouts": [],
        "dedup_keys": [],
    }
    for spec in specs:
        one = _job_params(spec)
        params["queues"].append(one["queue"])
        params["payloads"].append(one["payload"])
        params["priorities"].append(one["priority"])
        params["run_ats"].append(one["run_at"])
        params["max_attempts"].append(one["max_attempts"])
        params["backoff_bases"].append(one["backoff_base"])
        params["backoff_maxes"].append(one["backoff_max"])
        params["timeouts"].append(one["timeout"])
        params["dedup_keys"].append(one["dedup_key"])
    return params


_FEW_JOBS = 200  # up to this many, one INSERT over arrays beats COPY's round trips
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_CHUNK_ROWS = 2000


def _copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format."""
    return value.translate(_COPY_ESCAPES)


def _copy_float(value: float | None) -> str:
    if value is None:
        return "\\N"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


async def _copy_jobs(conn: TrioConnection, specs: Sequence[JobSpec]) -> list[int]:
    """COPY the jobs in, with ids reserved first (no dedup key among them).

    The rows are formatted here, in COPY's text format, and sent in chunks: about twice
    as fast as ``write_row`` with a ``Jsonb`` per row, and the server starts on the
    first chunk while the next is formatted. Payloads are serialized with ``json.dumps``
    (psycopg's default for ``Jsonb``); its output has no raw tab, newline or carriage
    return, so escaping its backslashes is enough.
    """
    queues = sorted({spec.queue for spec in specs})
    row = await (
        await conn.execute(SQL["prepare_copy_jobs"], {"count": len(specs), "queues": queues})
    ).fetchone()
    assert row is not None
    ids, now, attempts_of = row
    now_text = now.isoformat()
    queue_text = {q: _copy_text(q) for q in queues}
    default_attempts = {q: str(attempts_of[q]) for q in queues}
    null = "\\N"
    dumps = json.dumps
    async with conn.cursor().copy(SQL["copy_jobs"]) as copy:
        for start in range(0, len(specs), _COPY_CHUNK_ROWS):
            chunk = specs[start : start + _COPY_CHUNK_ROWS]
            lines = []
            for job_id, spec in zip(ids[start : start + len(chunk)], chunk, strict=True):
                payload = spec.payload
                text = dumps(payload if type(payload) is dict else dict(payload))
                if "\\" in text:
                    text = text.replace("\\", "\\\\")
                run_at = now_text if spec.run_at is None else spec.run_at.isoformat()
                attempts = (
                    default_attempts[spec.queue]
                    if spec.max_attempts is None
                    else str(spec.max_attempts)
                )
                backoff = spec.backoff
                if backoff is None:
                    base = cap = null
                else:
                    base, cap = _copy_float(backoff.base_seconds), _copy_float(backoff.max_seconds)
                lines.append(
                    f"{job_id}\t{queue_text[spec.queue]}\t{text}\t{spec.priority:d}\t"
                    f"{run_at}\t{attempts}\t{base}\t{cap}\t"
                    f"{_copy_float(spec.timeout)}\n"
                )
            await copy.write("".join(lines))
    await conn.execute(SQL["notify_queues"], {"queues": queues})
    return list(ids)
