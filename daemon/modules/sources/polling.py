"""The poll contract every pull kind plugs into, and the core that runs a poll.

A poll is a ``sources.poll`` job (fired by the source's schedule, or "poll now"; the same
job). :func:`run_poll` loads the source, builds its kind's :class:`Poller` from
:data:`POLLERS` (``kind -> factory(source, context)``) and commits what it yields:

The kind's side (a :class:`Poller`)
  ``batches()`` is an async generator of batches (sequences) of :class:`PolledItem`. An
  item has an ``identity`` (unique within the source, at most 2000 characters; a longer
  one is replaced by its SHA-256), and either ``content`` (bytes) or ``url`` (the
  pipeline's fetch step downloads it), a title, a media type, a file name, metadata, and
  ``remember`` (a JSON object kept in ``source_items.state``: etag, mtime, size...).
  ``context.known(identities)`` tells which identities the source has already seen, so a
  kind can avoid reading what it will not need. When a batch was committed, the core
  calls ``after_commit(outcome)`` with a :class:`BatchOutcome` (every item of the batch,
  and the document id of those that were new); it runs after the transaction, so it may
  be skipped by a crash: it must tolerate being called later for an item committed by an
  earlier poll (known items come back in ``outcome.known``). A kind sets
  ``context.next_state`` (a JSON object, e.g. the ETag) to be stored as the source's
  ``poll_state`` when the poll succeeds (read it back in ``context.source.poll_state``).
  The core closes the generator when it stops early (quota) or fails.
  Errors: raise a :class:`~daemon.shared.errors.DaemonError` (``FetchUnavailable``,
  ``FetchRefused``, ...); its message becomes the poll's error (it must not contain
  secrets).

The core's side (one transaction per batch)
  * the new items (not in ``source_items``) up to the poll's remaining quota
    (``limits.items_per_poll`` new documents per poll) are inserted into
    ``source_items`` ``ON CONFLICT DO NOTHING``: those the insert returns are new to this
    poll (a concurrent poll of the same source waits on the uncommitted rows, then finds
    them taken);
  * their documents, audit events and first pipeline jobs are written by
    :func:`daemon.modules.ingestion.write_documents` in the same transaction, and
    ``source_items.document_id`` linked; the poll's counters too.
  * An item larger than ``limits.bytes_per_item`` is recorded as seen without a document
    (``state.skipped``) and logged: it is not tried again.

  A poll killed at any point and retried creates no duplicates (committed items are
  known) and loses nothing (uncommitted items are not). When the quota cuts a poll
  short, ``next_state`` is not stored, so the next poll sees the rest.

Health: a poll that raises records the error, counts a consecutive failure and backs off
(``next_poll_at``: scheduled polls before it are skipped; "poll now" is not); after
``max_failures`` in a row the source is disabled with the reason (audited, logged) until
an admin enables it again. A success clears the failures.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio
from psycopg.types.json import Jsonb

from daemon.modules.audit import AuditContext, record
from daemon.modules.ingestion import FetchPolicy, NewDocument, write_documents
from daemon.modules.sources.errors import SourceNotFound
from daemon.modules.sources.kind_config import SourcePolicy, render_title
from daemon.modules.sources.store import SQL, Source, _get, schedule_name
from daemon.queue import set_enabled
from daemon.shared.errors import DaemonError, describe_cause

if TYPE_CHECKING:
    from daemon.modules.sources.metrics import SourceMetrics
    from daemon.shared.cpu_runner import CpuRunner
    from daemon.shared.cpu_threads import CpuThreads
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

log = logging.getLogger("triaged.sources")
MAX_IDENTITY = 2000


@attrs.frozen(kw_only=True)
class PolledItem:
    """One item a poller found (see the module docstring)."""

    identity: str
    title: str = ""
    content: bytes | None = None
    url: str | None = None
    media_type: str | None = None
    filename: str | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)
    remember: dict[str, Any] = attrs.field(factory=dict)

    @property
    def key(self) -> str:
        """The identity as stored: itself, or ``sha256:<hex>`` when too long."""
        if 0 < len(self.identity) <= MAX_IDENTITY and "\x00" not in self.identity:
            return self.identity
        return "sha256:" + hashlib.sha256(self.identity.encode()).hexdigest()


@attrs.frozen(kw_only=True)
class BatchOutcome:
    """A committed batch: ``created`` maps each new item's key to its document id;
    ``known`` holds the items already seen (by this or an earlier poll); ``skipped`` the
    items recorded without a document (too large); ``deferred`` the new items left for
    the next poll (quota)."""

    items: tuple[PolledItem, ...]
    created: Mapping[str, int]
    known: tuple[PolledItem, ...]
    skipped: tuple[PolledItem, ...]
    deferred: tuple[PolledItem, ...]


class Poller(Protocol):
    """A pull kind's poller (one per poll)."""

    def batches(self) -> AsyncGenerator[Sequence[PolledItem], None]: ...

    async def after_commit(self, outcome: BatchOutcome) -> None: ...


@attrs.frozen(kw_only=True)
class SourcesConfig:
    """Everything polls need, built once by whoever wires the process."""

    policy: SourcePolicy
    fetch: FetchPolicy  # the base fetch policy; a source's limits narrow it
    max_document_bytes: int
    max_attempts: int  # of the documents' pipeline jobs
    max_failures: int = 5  # consecutive failures before a source is disabled
    backoff_base_seconds: float = 30.0
    backoff_max_seconds: float = 3600.0
    metrics: SourceMetrics | None = None
    cpu: CpuThreads | None = None  # hashing big bodies; None: trio.to_thread
    processes: CpuRunner | None = None  # parsing feeds (holds the GIL); None: trio.to_thread

    def backoff(self, failures: int) -> float:
        return float(min(self.backoff_max_seconds,
                         self.backoff_base_seconds * 2.0 ** max(failures - 1, 0)))  # fmt: skip


@attrs.define(kw_only=True)
class PollContext:
    """What a poller is given: the source (with its secrets and previous ``poll_state``),
    the configuration, and where to leave the state to keep."""

    source: Source
    config: SourcesConfig
    pool: Pool
    next_state: dict[str, Any] | None = None

    async def known(self, identities: Sequence[str]) -> set[str]:
        """Which of ``identities`` the source has already seen."""
        async with self.pool.connection() as conn:
            await conn.set_autocommit(True)
            rows = await (
                await conn.execute(
                    SQL["known_items"],
                    {"source_id": self.source.id, "identities": list(identities)},
                )
            ).fetchall()
        return {row[0] for row in rows}

    def fetch_policy(self) -> FetchPolicy:
        """The process's fetch policy narrowed by the source's limits."""
        return attrs.evolve(
            self.config.fetch,
            max_bytes=min(self.config.fetch.max_bytes, self.source.limits.bytes_per_item),
            total_timeout=self.source.limits.timeout_seconds,
            max_redirects=int(self.source.config.get("max_redirects",
                                                     self.config.fetch.max_redirects)),
        )  # fmt: skip


PollerFactory = Callable[[PollContext], Poller]
POLLERS: dict[str, PollerFactory] = {}  # filled by the kinds' modules (see kinds.py)


@attrs.frozen(kw_only=True)
class PollResult:
    poll_id: int | None
    items_seen: int = 0
    documents_created: int = 0
    error: str | None = None
    skipped: str | None = None  # why nothing was polled


async def run_poll(
    pool: Pool,
    config: SourcesConfig,
    source_id: int,
    *,
    job_id: int | None = None,
    trigger: str = "schedule",
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PollResult:
    """Poll ``source_id`` once (see the module docstring). Idempotent across retries of
    the same job: a retry goes on where the killed attempt's last commit left off.
    Cancellation-safe: an uncommitted batch rolls back."""
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            source = await _get(conn, source_id)
        except SourceNotFound:
            return PollResult(poll_id=None, skipped="no such source")
        if source.kind not in POLLERS:
            return PollResult(poll_id=None, skipped=f"{source.kind} sources are not polled")
        if trigger == "schedule" and not source.enabled:
            return PollResult(poll_id=None, skipped="disabled")
        if trigger == "schedule" and source.next_poll_at and source.next_poll_at > now():
            return PollResult(poll_id=None, skipped="backing off after failures")
        row = await (
            await conn.execute(
                SQL["start_poll"], {"source_id": source_id, "job_id": job_id, "trigger": trigger}
            )
        ).fetchone()
        assert row is not None
        poll_id = int(row[0])
    context = PollContext(source=source, config=config, pool=pool)
    started = time.monotonic()
    seen = created = 0
    quota = source.limits.items_per_poll
    cut_short = False
    try:
        poller = POLLERS[source.kind](context)
        async with aclosing(poller.batches()) as batches:
            async for batch in batches:
                outcome = await _commit_batch(
                    pool, config, context, poll_id, batch, quota - created
                )
                seen += len(batch)
                created += len(outcome.created)
                await poller.after_commit(outcome)
                if outcome.deferred or created >= quota:
                    cut_short = True
                    break
    except DaemonError as exc:
        return await _failed(pool, config, source, poll_id, describe_cause(exc), seen, created)
    except OSError as exc:
        return await _failed(pool, config, source, poll_id, describe_cause(exc), seen, created)
    async with pool.transaction() as conn:
        state = None if cut_short or context.next_state is None else Jsonb(context.next_state)
        await conn.execute(SQL["poll_succeeded"], {"id": source_id, "poll_state": state})
        await conn.execute(SQL["finish_poll"], {"id": poll_id, "error": None})
    if config.metrics is not None:
        config.metrics.polled(source, items=seen, created=created,
                              duration=time.monotonic() - started)  # fmt: skip
    log.info(
        "source %s polled: %d items, %d new documents", source.id, seen, created,
        extra={"action": "source.polled", "source_id": source.id},
    )  # fmt: skip
    return PollResult(poll_id=poll_id, items_seen=seen, documents_created=created)


async def _commit_batch(
    pool: Pool,
    config: SourcesConfig,
    context: PollContext,
    poll_id: int,
    batch: Sequence[PolledItem],
    remaining: int,
) -> BatchOutcome:
    """One transaction: the batch's new items, their documents and jobs, the counters."""
    source = context.source
    by_key: dict[str, PolledItem] = {}
    for item in batch:
        by_key.setdefault(item.key, item)
    async with pool.transaction() as conn:
        known_rows = await (
            await conn.execute(
                SQL["known_items"], {"source_id": source.id, "identities": list(by_key)}
            )
        ).fetchall()
        known_keys = {row[0] for row in known_rows}
        fresh = [item for key, item in by_key.items() if key not in known_keys]
        taking, deferred = fresh[: max(remaining, 0)], fresh[max(remaining, 0) :]
        claimed = await _claim(conn, source.id, taking)
        new = [item for item in taking if item.key in claimed]
        limit = min(source.limits.bytes_per_item, config.max_document_bytes)
        too_large = [i for i in new if i.content is not None and len(i.content) > limit]
        writing = [i for i in new if not (i.content is not None and len(i.content) > limit)]
        receipts = await write_documents(
            conn,
            [_document(source, item) for item in writing],
            context=AuditContext.system(),
            max_bytes=limit,
            max_attempts=config.max_attempts,
        )
        created = {item.key: receipt.id for item, receipt in zip(writing, receipts, strict=True)}
        if created:
            links = [{"identity": k, "document_id": v} for k, v in created.items()]
            await conn.execute(SQL["link_items"], {"source_id": source.id, "links": Jsonb(links)})
        await conn.execute(SQL["count_poll"], {"id": poll_id, "seen": len(batch),
                                               "created": len(created)})  # fmt: skip
    for item in too_large:
        log.warning(
            "source %s: item %r is larger than %d bytes; recorded as seen, no document",
            source.id, item.key[:200], limit,
            extra={"action": "source.item_too_large", "source_id": source.id},
        )  # fmt: skip
    return BatchOutcome(
        items=tuple(batch),
        created=created,
        known=tuple(item for key, item in by_key.items() if key in known_keys),
        skipped=tuple(too_large),
        deferred=tuple(deferred),
    )


async def _claim(conn: TrioConnection, source_id: int, items: Sequence[PolledItem]) -> set[str]:
    if not items:
        return set()
    rows = [{"identity": item.key, "state": item.remember} for item in items]
    result = await (
        await conn.execute(SQL["claim_items"], {"source_id": source_id, "items": Jsonb(rows)})
    ).fetchall()
    return {row[0] for row in result}


def _document(source: Source, item: PolledItem) -> NewDocument:
    title = render_title(
        source.title_template,
        {"title": item.title, "source": source.name, "identity": item.identity,
         "filename": item.filename or ""},
    ) or item.title  # fmt: skip
    return NewDocument(
        title=_storable(title[:1000]),
        content=item.content,
        url=item.url,
        media_type=item.media_type,
        filename=None if item.filename is None else _storable(item.filename),
        source_id=source.id,
        external_id=item.key[:500],
        metadata=_storable({**source.metadata, **item.metadata}),
    )


def _storable(value: Any) -> Any:
    """``value`` without NUL characters in its strings (PostgreSQL text and jsonb cannot
    hold them; found items are the outside world's text)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


async def _failed(
    pool: Pool, config: SourcesConfig, source: Source, poll_id: int, error: str,
    seen: int, created: int,
) -> PollResult:  # fmt: skip
    """Record a failed poll: the error, one more consecutive failure, the backoff; at
    ``max_failures`` the source is disabled (audited and logged)."""
    error = error[:2000]
    with trio.CancelScope(shield=True):
        async with pool.transaction() as conn:
            failures_row = await (
                await conn.execute(
                    SQL["poll_failed"],
                    {"id": source.id, "error": error,
                     "backoff": config.backoff(source.consecutive_failures + 1)},
                )
            ).fetchone()  # fmt: skip
            failures = int(failures_row[0]) if failures_row else 0
            await conn.execute(SQL["finish_poll"], {"id": poll_id, "error": error})
            disabled = False
            if failures >= config.max_failures:
                reason = f"{failures} consecutive failed polls; the last: {error}"[:2000]
                row = await (
                    await conn.execute(SQL["disable_failing"], {"id": source.id, "reason": reason})
                ).fetchone()
                if row is not None:
                    disabled = True
                    if source.queue_schedule() is not None:
                        await set_enabled(conn, schedule_name(source.id), False)
                    await record(
                        conn, AuditContext.system(), "source.disabled", target_type="source",
                        target_id=source.id, details={"reason": reason},
                    )  # fmt: skip
    if config.metrics is not None:
        config.metrics.failed(source)
    log.warning(
        "source %s poll failed (%d in a row): %s", source.id, failures, error,
        extra={"action": "source.poll_failed", "source_id": source.id},
    )  # fmt: skip
    if disabled:
        log.error(
            "source %s disabled after %d consecutive failed polls", source.id, failures,
            extra={"action": "source.disabled", "source_id": source.id},
        )  # fmt: skip
    return PollResult(poll_id=poll_id, items_seen=seen, documents_created=created, error=error)
