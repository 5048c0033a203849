"""Webhook sources: a pushed delivery, authenticated by its signature, stored exactly once.

The scheme is :mod:`.webhook_signature`'s (``Triaged-Delivery-Id``, ``Triaged-Timestamp``,
``Triaged-Signature: v1=<hex>``, HMAC-SHA256 over ``timestamp.body``). Two steps, both
called by the API route:

1. :func:`authenticate_delivery` reads the source and checks the signature against its
   valid secrets (``config.secret``, and ``config.previous_secret`` until
   ``config.previous_secret_expires_at``: a rotation's overlap). An unknown, deleted or
   non-webhook source has no secret, so it refuses like a bad signature (the answer does
   not tell which ids exist). A refusal is :class:`WebhookRefused` (401), logged with its
   reason and never with the signature or a secret. A disabled source answers
   :class:`SourceDisabled` once the sender is authenticated.
2. :func:`receive_delivery` writes, in **one transaction**: the signed message's digest
   with the delivery id it came under, the delivery as the source's item
   ``delivery:<id>`` (its idempotency key), the document, its audit event and first
   pipeline job (:func:`daemon.modules.ingestion.write_documents`), and the receipt in
   the item. A retried delivery (same id, signed again with a new timestamp) finds the
   item and answers the stored receipt; with a different body it is a
   :class:`DeliveryConflict`. A signed message accepted before is a replay, refused
   (:class:`WebhookRefused`, nothing written) — unless it is the very request accepted
   before (same delivery id, same body: the sender resent it because the answer was
   lost after the commit), which answers the stored receipt too. Concurrent retries
   race on the digest's or the item's primary key: the loser waits for the winner's
   commit and answers its receipt. A failure anywhere rolls everything back, the
   digest included, so the sender may retry.

A stored receipt whose document the retention purge deleted since (the item keeps the
receipt, its ``document_id`` is NULL) is answered with :attr:`DeliveryReceipt.document_kept`
False: the route leaves out the ``Location`` that would name a document no longer there.

Digests are kept until their timestamp leaves the tolerance window (a replay after that is
refused as stale); each delivery forgets its source's expired ones in its transaction.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
from psycopg.types.json import Jsonb

from daemon.modules.ingestion import NewDocument, Receipt, write_documents
from daemon.modules.sources.errors import DeliveryConflict, SourceDisabled, WebhookRefused
from daemon.modules.sources.kind_config import render_title
from daemon.modules.sources.webhook_signature import (
    DEFAULT_TOLERANCE_SECONDS,
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Refused,
    Verified,
    WebhookSecrets,
    verify,
)
from daemon.shared.db.queries import load_queries

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.modules.audit import AuditContext
    from daemon.shared.cpu_threads import CpuThreads
    from daemon.shared.db.pool import Pool
    from daemon.shared.db.psycopg_trio import TrioConnection

SQL = load_queries("daemon.modules.sources", "webhook.sql")
SIGNED_HEADERS = (DELIVERY_ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
INLINE_HASH_BYTES = 64 * 1024  # larger bodies are hashed in the CPU threads
log = logging.getLogger("triaged.sources")


@attrs.frozen(kw_only=True)
class WebhookTarget:
    """What a delivery's document takes from its source."""

    id: int
    name: str
    title_template: str
    metadata: dict[str, Any]
    max_item_bytes: int


@attrs.frozen(kw_only=True)
class DeliveryReceipt:
    """The answer to a delivery: the receipt (``receipt.replayed``: a stored one) and
    whether its document still exists (False: purged since by retention)."""

    receipt: Receipt
    document_kept: bool = True


@attrs.frozen(kw_only=True)
class AuthenticatedDelivery:
    """A delivery whose signature matched a valid secret of its (enabled) source."""

    source: WebhookTarget
    verified: Verified
    tolerance: float
    body_sha256: str


def _secrets(secrets: dict[str, Any], config: dict[str, Any]) -> WebhookSecrets | None:
    current = secrets.get("secret")
    if not isinstance(current, str) or not current:
        return None
    until = config.get("previous_secret_expires_at")
    previous_until = None
    if isinstance(until, str):
        try:
            previous_until = datetime.fromisoformat(until).timestamp()
        except ValueError:
            previous_until = None
    previous = secrets.get("previous_secret")
    return WebhookSecrets(
        current=current,
        previous=previous if isinstance(previous, str) and previous else None,
        previous_until=previous_until,
    )


def _verify(
    headers: Mapping[str, str], body: bytes, *, secrets: tuple[str, ...], now: float,
    tolerance: float,
) -> tuple[Verified | Refused, str]:  # fmt: skip
    return (
        verify(headers, body, secrets=secrets, now=now, tolerance=tolerance),
        hashlib.sha256(body).hexdigest(),
    )


async def authenticate_delivery(
    pool: Pool,
    source_id: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    cpu: CpuThreads | None = None,
    now: float | None = None,
) -> AuthenticatedDelivery:
    """The delivery authenticated against source ``source_id`` (see the module docstring).
    Bodies over :data:`INLINE_HASH_BYTES` are hashed in ``cpu``'s threads when given.

    Raises:
        WebhookRefused: not authenticated (the reason is logged, not answered).
        SourceDisabled: authenticated, but the source is disabled.
    """
    now = time.time() if now is None else now
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        row = await (await conn.execute(SQL["webhook_source"], {"id": source_id})).fetchone()
    secrets: tuple[str, ...] = ()
    tolerance = DEFAULT_TOLERANCE_SECONDS
    if row is not None and row[1] == "webhook":
        stored = _secrets(row[3] or {}, row[4] or {})
        if stored is not None:
            secrets = stored.valid_at(now)
        tolerance = float((row[4] or {}).get("tolerance_seconds", DEFAULT_TOLERANCE_SECONDS))
    sent = {name: headers[name] for name in SIGNED_HEADERS if headers.get(name) is not None}
    check = functools.partial(_verify, sent, body, secrets=secrets, now=now, tolerance=tolerance)
    if cpu is not None and len(body) > INLINE_HASH_BYTES:
        result, body_sha256 = await cpu.run(check)  # megabytes of HMAC: off the event loop
    else:
        result, body_sha256 = check()
    if isinstance(result, Refused):
        log.warning(
            "webhook delivery to source %s refused: %s", source_id, result.reason.value,
            extra={"action": "source.webhook_refused", "source_id": source_id,
                   "reason": result.reason.value},
        )  # fmt: skip
        raise WebhookRefused()
    assert row is not None
    if not row[2]:
        raise SourceDisabled("the source is disabled; an admin can enable it again")
    return AuthenticatedDelivery(
        source=WebhookTarget(
            id=int(row[0]), name=str(row[5]), title_template=str(row[6]),
            metadata=dict(row[7] or {}), max_item_bytes=int(row[8]),
        ),
        verified=result,
        tolerance=tolerance,
        body_sha256=body_sha256,
    )  # fmt: skip


def delivery_identity(delivery_id: str) -> str:
    """The source item a delivery is recorded as."""
    return f"delivery:{delivery_id}"


async def receive_delivery(
    pool: Pool,
    delivery: AuthenticatedDelivery,
    new: NewDocument,
    *,
    context: AuditContext,
    max_bytes: int,
    max_attempts: int,
) -> DeliveryReceipt:
    """Store the delivery's document once (see the module docstring); ``new`` is the
    document the body describes (its source, external id and title are set here).
    ``receipt.replayed`` is True for a retried or resent delivery.

    Raises:
        WebhookRefused: the signed message was accepted before under another delivery
            id or with another body (a replay).
        DeliveryConflict: the delivery id was used with a different body.
        ValidationFailed, DocumentTooLarge, UnsupportedMediaType: the document itself.
    """
    source = delivery.source
    identity = delivery_identity(delivery.verified.delivery_id)
    new = attrs.evolve(
        new,
        title=render_title(
            source.title_template,
            {"title": new.title, "source": source.name,
             "identity": delivery.verified.delivery_id, "filename": new.filename or ""},
        ) or new.title,
        source_id=source.id,
        external_id=identity[:500],
        metadata={**source.metadata, **new.metadata},
    )  # fmt: skip
    async with pool.transaction() as conn:
        await conn.execute(SQL["forget_expired_signatures"], {"source_id": source.id})
        signature = {"source_id": source.id, "digest": delivery.verified.digest}
        remembered = await (
            await conn.execute(
                SQL["remember_signature"],
                {
                    **signature,
                    "expires_at": delivery.verified.timestamp + delivery.tolerance,
                    "delivery_id": delivery.verified.delivery_id,
                },
            )
        ).fetchone()
        params = {"source_id": source.id, "identity": identity}
        if remembered is None:
            # Accepted before: only the very same request (same delivery id, same body)
            # answers its receipt; anything else carrying that signature is a replay.
            under = await (await conn.execute(SQL["signature_delivery"], signature)).fetchone()
            resent = None
            if under is not None and under[0] == delivery.verified.delivery_id:
                resent = await _stored_receipt(conn, params, delivery.body_sha256)
            if resent is None:
                log.warning(
                    "webhook delivery to source %s refused: replayed", source.id,
                    extra={"action": "source.webhook_refused", "source_id": source.id,
                           "reason": "replayed"},
                )  # fmt: skip
                raise WebhookRefused()
            return resent
        claimed = await (
            await conn.execute(
                SQL["claim_delivery"], {**params, "state": Jsonb({"sha256": delivery.body_sha256})}
            )
        ).fetchone()
        if claimed is None:
            stored = await _stored_receipt(conn, params, delivery.body_sha256)
            if stored is None:
                raise DeliveryConflict(
                    "this delivery id was already received with a different body"
                )
            return stored
        [receipt] = await write_documents(
            conn, [new], context=context, max_bytes=min(max_bytes, source.max_item_bytes),
            max_attempts=max_attempts,
        )  # fmt: skip
        await conn.execute(
            SQL["record_delivery"],
            {**params, "document_id": receipt.id,
             "state": Jsonb({"sha256": delivery.body_sha256, "receipt": receipt.as_json()})},
        )  # fmt: skip
    log.info(
        "webhook delivery to source %s created document %s", source.id, receipt.id,
        extra={"action": "source.webhook_received", "source_id": source.id,
               "document_id": receipt.id},
    )  # fmt: skip
    return DeliveryReceipt(receipt=receipt)


async def _stored_receipt(
    conn: TrioConnection, params: dict[str, Any], body_sha256: str
) -> DeliveryReceipt | None:
    """The receipt stored for the delivery item if it was received with this body."""
    row = await (await conn.execute(SQL["stored_delivery"], params)).fetchone()
    state = dict(row[0] or {}) if row is not None else {}
    if state.get("sha256") != body_sha256 or "receipt" not in state:
        return None
    assert row is not None
    return DeliveryReceipt(
        receipt=Receipt.from_json(state["receipt"]), document_kept=row[1] is not None
    )
