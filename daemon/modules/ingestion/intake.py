"""Document intake: a new document row, its bytes, its first job, in one transaction.

Contract of :func:`receive_document`:

* One transaction writes the document (state ``received``), its content when given,
  its first history event, the audit event and the ``ingest.fetch`` job: a document
  the caller was told about always has its job, and a failed intake leaves nothing.
  Concurrent intakes (without an Idempotency-Key) share that transaction by group
  commit through the process's :class:`IntakeWriter`; one whose values the database
  refuses fails alone. Alone or in a group, with a key or without, the rows are written
  by one function (``_write``).
* With an ``Idempotency-Key``, the first request's receipt is stored with the key (per
  principal), and a retry of the same request gets that receipt again instead of a
  second document; the same key with a different request is refused. Concurrent
  retries race on the key's primary key: one document is created, the others roll
  back and answer the winner's receipt. Keys are kept a day (housekeeping prunes them).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs
import psycopg
from psycopg.types.json import Jsonb

from daemon.modules.audit import NewEvent, record_many
from daemon.modules.ingestion.errors import DocumentTooLarge, IdempotencyConflict
from daemon.modules.ingestion.extraction import canonical_media_type, is_supported_media_type
from daemon.modules.ingestion.states import STEPS, DocumentState
from daemon.modules.ingestion.store import SQL
from daemon.queue import JobSpec, enqueue_many
from daemon.shared.db.group_commit import GroupCommit
from daemon.shared.errors import DatabaseError, UnsupportedMediaType, ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Sequence

    from daemon.modules.audit import AuditContext
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

_GENERIC_TYPES = {None, "", "application/octet-stream", "binary/octet-stream"}
_FIRST_STEP = STEPS[0]


@attrs.frozen(kw_only=True)
class NewDocument:
    """What a client sends: ``content`` (bytes) or ``url``, exactly one."""

    title: str = ""
    content: bytes | None = None
    url: str | None = None
    media_type: str | None = None
    filename: str | None = None
    source_id: int | None = None  # None: the built-in upload source
    external_id: str | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)

    def fingerprint(self) -> bytes:
        """SHA-256 of everything the request said: equal requests, equal fingerprints."""
        digest = hashlib.sha256()
        described = {k: v for k, v in attrs.asdict(self).items() if k != "content"}
        digest.update(json.dumps(described, sort_keys=True, default=str).encode())
        digest.update(b"\0" + (self.content or b""))
        return digest.digest()


@attrs.frozen(kw_only=True)
class Receipt:
    """The answer to an intake: the document's id, its state then, and whether this is
    the stored answer to an earlier request with the same Idempotency-Key."""

    id: int
    state: str
    title: str
    created_at: datetime
    replayed: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "title": self.title,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Receipt:
        return cls(
            id=int(data["id"]),
            state=str(data["state"]),
            title=str(data["title"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            replayed=True,
        )


class _KeyTaken(Exception):
    """Another request stored this Idempotency-Key first (rolls our transaction back)."""


def check_new_document(new: NewDocument, *, max_bytes: int) -> NewDocument:
    """The document as it will be stored, media type canonical.

    Raises:
        ValidationFailed: neither or both of content and url; a url that is not http(s).
        DocumentTooLarge: content over ``max_bytes``.
        UnsupportedMediaType: a declared media type that cannot be extracted. A missing
            or generic one is guessed from the file name, else left to detection.
    """
    if (new.content is None) == (new.url is None):
        raise ValidationFailed(
            [{"field": "content", "message": "give exactly one of content, url or a file"}]
        )
    if new.content is not None and len(new.content) > max_bytes:
        raise DocumentTooLarge(
            f"the document has {len(new.content)} bytes; the limit is {max_bytes}"
        )
    if new.url is not None:
        try:
            parts = urlsplit(new.url)
            hostname = parts.hostname
        except ValueError:
            raise ValidationFailed([{"field": "url", "message": "not a valid URL"}]) from None
        if parts.scheme not in ("http", "https") or not hostname:
            raise ValidationFailed([{"field": "url", "message": "must be an http(s) URL"}])
        if parts.username is not None or parts.password is not None:
            # It would be refused when fetched anyway; and the password would be stored.
            raise ValidationFailed(
                [{"field": "url", "message": "must not carry a user name or password"}]
            )
    media_type = new.media_type
    if media_type in _GENERIC_TYPES and new.filename:
        media_type = mimetypes.guess_type(new.filename)[0] or media_type
    if media_type not in _GENERIC_TYPES:
        if not is_supported_media_type(media_type):
            raise UnsupportedMediaType(f"documents of type {media_type} cannot be extracted")
        media_type = canonical_media_type(media_type) or media_type
    return attrs.evolve(new, media_type=media_type or None)


INTAKE_MAX_BATCH = 64
INTAKE_MAX_BATCH_BYTES = 64 << 20  # contents in one statement (PostgreSQL caps one at 1 GB)


@attrs.frozen
class _Intake:
    new: NewDocument
    principal: str
    context: AuditContext
    max_attempts: int


class IntakeWriter:
    """The process's intake writes on ``pool``: one per process and database, built by
    whoever wires the process and given to every :func:`receive_document` call.
    Concurrent intakes without an Idempotency-Key share transactions through it (group
    commit, ``daemon/shared/db/group_commit.py``: up to ``max_batch`` intakes or
    ``max_batch_bytes`` of contents)."""

    def __init__(
        self,
        pool: Pool,
        *,
        max_batch: int = INTAKE_MAX_BATCH,
        max_batch_bytes: int = INTAKE_MAX_BATCH_BYTES,
    ) -> None:
        self.pool = pool
        self._group = GroupCommit(
            self._write_group,
            max_batch=max_batch,
            weight=lambda intake: len(intake.new.content or b""),
            max_weight=max_batch_bytes,
        )

    @property
    def batches(self) -> int:
        """Transactions the group commit wrote so far (for tests and metrics)."""
        return self._group.batches

    async def _submit(self, intake: _Intake) -> Receipt:
        """Write ``intake`` in a transaction shared with concurrent ones."""
        return await self._group.submit(intake)

    async def _write_keyed(self, intake: _Intake, key: str, fingerprint: bytes) -> Receipt:
        """Write ``intake`` alone with its Idempotency-Key, in one transaction.

        Raises:
            _KeyTaken: another request stored the key first (nothing was written).
        """
        async with self.pool.transaction() as conn:
            receipt = (await _insert(conn, [intake]))[0]
            stored = await (
                await conn.execute(
                    SQL["insert_idempotency_key"],
                    {
                        "principal": intake.principal,
                        "key": key,
                        "request_hash": fingerprint,
                        "document_id": receipt.id,
                        "response": Jsonb(receipt.as_json()),
                    },
                )
            ).fetchone()
            if stored is None:
                raise _KeyTaken()
            await _audit(conn, [intake], [receipt])  # last: it takes the audit chain's lock
        return receipt

    async def _write_group(self, intakes: Sequence[_Intake]) -> list[Receipt | Exception]:
        """Write intakes in one transaction; if the database refuses a value, each is
        written alone, so that only its own fails."""
        try:
            async with self.pool.transaction() as conn:
                return list(await _write(conn, intakes))
        except (psycopg.OperationalError, psycopg.InterfaceError, DatabaseError):
            raise  # the database is away: every intake of the batch fails alike
        except psycopg.Error:
            if len(intakes) == 1:
                raise
        return [await self._write_alone(intake) for intake in intakes]

    async def _write_alone(self, intake: _Intake) -> Receipt | Exception:
        """One intake in its own transaction; any error is its own (the intakes written
        before it in the same group are committed, and must be answered so)."""
        try:
            async with self.pool.transaction() as conn:
                return (await _write(conn, [intake]))[0]
        except Exception as exc:
            return exc


async def receive_document(
    writer: IntakeWriter,
    new: NewDocument,
    *,
    context: AuditContext,
    max_bytes: int,
    max_attempts: int,
    idempotency_key: str | None = None,
) -> Receipt:
    """Store a new document through the process's ``writer`` and enqueue its first step
    (see the module docstring).

    Raises:
        ValidationFailed, DocumentTooLarge, UnsupportedMediaType: see
            :func:`check_new_document`.
        IdempotencyConflict: the key was used with a different request.
    """
    new = check_new_document(new, max_bytes=max_bytes)
    principal = f"{context.actor.type.value}:{context.actor.id}"
    intake = _Intake(new, principal, context, max_attempts)
    if idempotency_key is None:
        return await writer._submit(intake)
    fingerprint = new.fingerprint()
    for _ in range(3):
        stored = await _stored_receipt(writer.pool, principal, idempotency_key, fingerprint)
        if stored is not None:
            return stored
        try:
            return await writer._write_keyed(intake, idempotency_key, fingerprint)
        except _KeyTaken:
            continue
    raise IdempotencyConflict("the Idempotency-Key kept changing hands; try again")


async def write_documents(
    conn: TrioConnection,
    news: Sequence[NewDocument],
    *,
    context: AuditContext,
    max_bytes: int,
    max_attempts: int,
) -> list[Receipt]:
    """Store ``news`` in the caller's transaction, with what every intake writes (the
    documents, their contents and first history events, audit events and first jobs),
    in order: the batch intake of sources, whose polls commit their documents together
    with their own records. Nothing is committed here; a rollback leaves nothing.

    Raises:
        ValidationFailed, DocumentTooLarge, UnsupportedMediaType: see
            :func:`check_new_document` (raised before anything is written).
    """
    if not news:
        return []
    checked = [check_new_document(new, max_bytes=max_bytes) for new in news]
    principal = f"{context.actor.type.value}:{context.actor.id}"
    return await _write(conn, [_Intake(new, principal, context, max_attempts) for new in checked])


async def _stored_receipt(
    pool: Pool, principal: str, key: str, fingerprint: bytes
) -> Receipt | None:
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        row = await (
            await conn.execute(SQL["get_idempotency_key"], {"principal": principal, "key": key})
        ).fetchone()
    if row is None:
        return None
    if bytes(row[0]) != fingerprint:
        raise IdempotencyConflict("this Idempotency-Key was already used with a different request")
    return Receipt.from_json(row[1])


async def _write(conn: TrioConnection, intakes: Sequence[_Intake]) -> list[Receipt]:
    """The one intake write: in the caller's transaction, each intake's document, its
    content and first history event (one statement), its first job, and its audit event
    (last: see :func:`_audit`)."""
    receipts = await _insert(conn, intakes)
    await _audit(conn, intakes, receipts)
    return receipts


async def _insert(conn: TrioConnection, intakes: Sequence[_Intake]) -> list[Receipt]:
    """The documents, their content, first history events and first jobs."""
    rows = await (
        await conn.execute(SQL["insert_documents"], _document_columns(intakes))
    ).fetchall()
    ids = [int(row[0]) for row in rows]
    await enqueue_many(
        conn,
        [
            JobSpec(
                queue=_FIRST_STEP.queue,
                payload={"document_id": document_id},
                max_attempts=intake.max_attempts,
            )
            for intake, document_id in zip(intakes, ids, strict=True)
        ],
    )
    return [
        Receipt(
            id=int(row[0]),
            state=DocumentState.RECEIVED.value,
            title=intake.new.title,
            created_at=row[1],
        )
        for intake, row in zip(intakes, rows, strict=True)
    ]


async def _audit(
    conn: TrioConnection, intakes: Sequence[_Intake], receipts: Sequence[Receipt]
) -> None:
    """The intakes' audit events: the last statement of their transaction, since an
    audit insert holds the audit chain's lock until commit (migration 0013)."""
    await record_many(
        conn,
        [
            NewEvent(
                context=intake.context,
                action="document.created",
                target_type="document",
                target_id=receipt.id,
                details=_audit_details(intake.new),
            )
            for intake, receipt in zip(intakes, receipts, strict=True)
        ],
    )


def _document_columns(intakes: Sequence[_Intake]) -> dict[str, Any]:
    """The ``insert_documents`` parameters: the fields as JSON rows, the contents apart."""
    rows = [
        {
            "n": n,
            "title": intake.new.title,
            "source_id": intake.new.source_id,
            "external_id": intake.new.external_id,
            "url": intake.new.url,
            "filename": intake.new.filename,
            "media_type": intake.new.media_type,
            "size_bytes": None if intake.new.content is None else len(intake.new.content),
            "metadata": intake.new.metadata,
            "created_by": intake.principal,
        }
        for n, intake in enumerate(intakes)
    ]
    return {"documents": Jsonb(rows), "contents": [intake.new.content for intake in intakes]}


def _audit_details(new: NewDocument) -> dict[str, Any]:
    return {
        "title": new.title[:200],
        "url": new.url,
        "bytes": None if new.content is None else len(new.content),
    }


IDEMPOTENCY_KEY_KEEP_SECONDS = 86_400.0  # a client retries within minutes, not days


async def prune_idempotency_keys(
    pool: Pool, *, keep_seconds: float = IDEMPOTENCY_KEY_KEEP_SECONDS
) -> int:
    """Forget Idempotency-Keys older than ``keep_seconds`` (a retry after that creates a
    new document); idempotent. Returns how many went."""
    async with pool.transaction() as conn:
        cursor = await conn.execute(SQL["prune_idempotency_keys"], {"keep": keep_seconds})
        return cursor.rowcount
