"""The audit log's hash chain: checking it, and deleting its oldest events.

Every event carries ``seq`` (its chain position), ``prev_hash`` (the hash of the event
before it; 32 zero bytes for the first) and ``hash`` = SHA-256(``prev_hash`` || the
event's content as canonical JSON, see ``audit_event_material`` in migration 0013). A
``BEFORE INSERT`` trigger computes them under the row lock of the chain head
(``audit_chain``), so every writer chains its events without code changes, in the order
the inserting transactions commit. The cost: audited transactions serialize from their
first audit insert to their commit (record events last in a transaction).

Only the retention purge deletes events (:func:`purge_batch`): a prefix of the chain,
with a checkpoint in the same transaction: the position, id and hash of the last deleted
event, signed with HMAC-SHA256 (the configured key, else the installation's key stored
at install). :func:`verify` checks the newest checkpoint's signature, that the remaining
chain starts where it ends, every event's hash and link, and that the last event is the
chain head: the first failure is reported with the event it concerns.

What it proves: an event changed, removed or inserted in the middle, and the oldest or
newest events removed, are detected. Someone with write access to the database who
recomputes every later hash (and the head) is not detected by the chain alone: keep the
head hash printed by ``triaged audit verify`` somewhere else to anchor it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

import attrs

from daemon.shared.db.queries import load_queries

if TYPE_CHECKING:
    from datetime import datetime

    from daemon.shared.db.psycopg_trio import TrioConnection

SQL = load_queries("daemon.modules.audit", "queries.sql")

GENESIS = bytes(32)  # the prev_hash of the first event ever

UNSET_KEY_WARNING = (
    "TRIAGED_AUDIT_CHECKPOINT_KEY is not set: audit checkpoints are signed with the "
    "installation key, stored in the same database, so anyone who can write to the "
    "database can forge a checkpoint; set the key (and keep it) in production"
)


def checkpoint_key_warning(configured: bytes | None) -> str | None:
    """The warning to give while no checkpoint key is configured (None once it is)."""
    return UNSET_KEY_WARNING if configured is None else None


@attrs.frozen(kw_only=True)
class CheckpointKey:
    """The key signing checkpoints: ``source`` 'settings' or 'installation'."""

    source: str
    key: bytes = attrs.field(repr=False)


def checkpoint_mac(key: bytes, *, last_seq: int, last_event_id: int, last_hash: bytes) -> bytes:
    """HMAC-SHA256 of a checkpoint's position, event id and hash."""
    message = f"triaged-audit-checkpoint:{last_seq}:{last_event_id}:{last_hash.hex()}"
    return hmac.new(key, message.encode("ascii"), hashlib.sha256).digest()


async def checkpoint_key(conn: TrioConnection, configured: bytes | None) -> CheckpointKey:
    """The key new checkpoints are signed with: the configured one, else the
    installation's."""
    if configured is not None:
        return CheckpointKey(source="settings", key=configured)
    return CheckpointKey(source="installation", key=await _installation_key(conn))


async def _installation_key(conn: TrioConnection) -> bytes:
    row = await (await conn.execute(SQL["chain_key"])).fetchone()
    assert row is not None, "migration 0013 inserts the chain head"
    return bytes(row[0])


async def purge_bound(conn: TrioConnection, cutoff: datetime) -> int:
    """The chain position of the oldest event at or after ``cutoff``: every position
    below it may be purged (a prefix, even if some older ``at`` comes later)."""
    row = await (await conn.execute(SQL["purge_bound"], {"cutoff": cutoff})).fetchone()
    assert row is not None
    return int(row[0])


async def count_below(conn: TrioConnection, below_seq: int) -> int:
    """How many events lie below chain position ``below_seq``."""
    row = await (await conn.execute(SQL["count_below"], {"below_seq": below_seq})).fetchone()
    return int(row[0]) if row else 0


async def purge_batch(
    conn: TrioConnection, *, below_seq: int, limit: int, signer: CheckpointKey
) -> int:
    """Delete the oldest events below ``below_seq`` (at most ``limit``) and leave a
    signed checkpoint of the last one, in the caller's transaction (never commits).
    Returns how many were deleted (0: nothing left, no checkpoint written).

    Concurrent calls serialize on a transaction-level advisory lock, so the deleted
    events are always a prefix of the chain."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('triaged.audit_purge'))")
    await conn.execute(SQL["enable_purge"])
    rows = await (
        await conn.execute(SQL["purge_events"], {"below_seq": below_seq, "limit": limit})
    ).fetchall()
    if not rows:
        return 0
    last_seq, last_id, last_hash = max(rows, key=lambda r: r[0])
    last_hash = bytes(last_hash)
    await conn.execute(
        SQL["insert_checkpoint"],
        {
            "last_seq": last_seq,
            "last_event_id": last_id,
            "last_hash": last_hash,
            "key_source": signer.source,
            "mac": checkpoint_mac(
                signer.key, last_seq=last_seq, last_event_id=last_id, last_hash=last_hash
            ),
        },
    )
    return len(rows)


@attrs.frozen(kw_only=True)
class Verification:
    """What :func:`verify` found. ``ok``: the chain holds. Otherwise ``event_id`` and
    ``seq`` name the first broken link (None when the fault is not one event's, e.g. a
    bad checkpoint signature) and ``problem`` says what is wrong."""

    ok: bool
    events: int  # events in the log
    checkpoint_id: int | None  # the checkpoint the check started from
    head_seq: int
    head_hash: bytes
    problem: str | None = None
    event_id: int | None = None
    seq: int | None = None


async def verify(conn: TrioConnection, configured_key: bytes | None) -> Verification:
    """Check the whole remaining chain from the newest checkpoint (see the module
    docstring). Read-only; run it in a REPEATABLE READ transaction for a consistent
    view while events are being added."""
    head_row = await (await conn.execute(SQL["chain_head"])).fetchone()
    assert head_row is not None
    head_seq, head_hash = int(head_row[0]), bytes(head_row[1])
    ends = await (await conn.execute(SQL["chain_ends"])).fetchone()
    events = int(ends[2]) if ends else 0

    def broken(
        problem: str,
        *,
        event_id: int | None = None,
        seq: int | None = None,
        checkpoint_id: int | None = None,
    ) -> Verification:
        return Verification(
            ok=False,
            events=events,
            checkpoint_id=checkpoint_id,
            head_seq=head_seq,
            head_hash=head_hash,
            problem=problem,
            event_id=event_id,
            seq=seq,
        )

    checkpoint = await (await conn.execute(SQL["latest_checkpoint"])).fetchone()
    checkpoint_id = None
    expected_seq, expected_prev = 1, GENESIS
    if checkpoint is not None:
        checkpoint_id, _at, cp_seq, cp_event, cp_hash, source, mac = checkpoint
        cp_hash = bytes(cp_hash)
        if source == "settings" and configured_key is None:
            return broken(
                f"checkpoint {checkpoint_id} is signed with the configured key "
                "(TRIAGED_AUDIT_CHECKPOINT_KEY), which is not set",
                checkpoint_id=checkpoint_id,
            )
        key = configured_key if source == "settings" else await _installation_key(conn)
        assert key is not None
        expected_mac = checkpoint_mac(
            key, last_seq=cp_seq, last_event_id=cp_event, last_hash=cp_hash
        )
        if not hmac.compare_digest(expected_mac, bytes(mac)):
            return broken(
                f"checkpoint {checkpoint_id} (after event {cp_event}) has a bad signature",
                checkpoint_id=checkpoint_id,
            )
        expected_seq, expected_prev = int(cp_seq) + 1, cp_hash

    first = await (await conn.execute(SQL["first_event"])).fetchone()
    if first is None:
        if head_seq != expected_seq - 1 or head_hash != expected_prev:
            return broken(
                f"the log is empty but its head is at position {head_seq}: events "
                f"{expected_seq}..{head_seq} were removed",
                checkpoint_id=checkpoint_id,
            )
        return Verification(
            ok=True, events=0, checkpoint_id=checkpoint_id, head_seq=head_seq, head_hash=head_hash
        )
    first_seq, first_id, first_prev = int(first[0]), int(first[1]), bytes(first[2])
    if first_seq != expected_seq or first_prev != expected_prev:
        where = "the start" if checkpoint_id is None else f"checkpoint {checkpoint_id}"
        return broken(
            f"event {first_id} (position {first_seq}) does not follow {where} "
            f"(expected position {expected_seq}): older events were removed or changed",
            event_id=first_id,
            seq=first_seq,
            checkpoint_id=checkpoint_id,
        )
    bad = await (await conn.execute(SQL["first_broken_link"], {"from_seq": first_seq})).fetchone()
    if bad is not None:
        seq, event_id, intact, _linked = bad
        problem = (
            f"event {event_id} (position {seq}) was changed: its hash does not match its content"
            if not intact
            else f"event {event_id} (position {seq}) does not link to the event before it: "
            "events were removed or inserted"
        )
        return broken(problem, event_id=int(event_id), seq=int(seq), checkpoint_id=checkpoint_id)
    last = await (await conn.execute(SQL["last_event"])).fetchone()
    assert last is not None
    last_seq, last_id, last_hash = int(last[0]), int(last[1]), bytes(last[2])
    if last_seq != head_seq or last_hash != head_hash:
        return broken(
            f"the last event is {last_id} (position {last_seq}) but the chain head is at "
            f"position {head_seq}: newer events were removed or the last one changed",
            event_id=last_id,
            seq=last_seq,
            checkpoint_id=checkpoint_id,
        )
    return Verification(
        ok=True, events=events, checkpoint_id=checkpoint_id, head_seq=head_seq, head_hash=head_hash
    )
