"""Stored contents, read for the hash and extract steps a group at a time.

A batch's documents are worked in groups whose contents together stay within
``BLOB_GROUP_BYTES`` (a bigger document is a group alone): a step holds one group's
contents in memory at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from daemon.modules.ingestion.steps.contract import Group, Read

if TYPE_CHECKING:
    from collections.abc import Sequence

    from daemon.modules.ingestion.states import Step
    from daemon.modules.ingestion.steps.contract import Settled
    from daemon.modules.ingestion.store import IngestionStore

BLOB_GROUP_BYTES = 64 << 20  # contents the hash and extract steps hold at once


@attrs.frozen(kw_only=True)
class StoredContent:
    """A document's content not read yet: its size (0 when unknown)."""

    size: int


@attrs.frozen(kw_only=True)
class Content:
    """A document's content as read: its declared type and file name, and the bytes."""

    media_type: str | None
    filename: str | None
    data: bytes


async def read_in_groups(store: IngestionStore, ids: Sequence[int]) -> Read[StoredContent]:
    """``ids`` in groups of at most ``BLOB_GROUP_BYTES`` of contents (by the sizes
    stored; a document bigger than that is a group alone)."""
    sizes = await store.read("sizes", ids)
    groups: list[dict[int, StoredContent]] = [{}]
    total = 0
    for document_id in ids:
        size = int((sizes.get(document_id) or (0,))[0] or 0)
        if groups[-1] and total + size > BLOB_GROUP_BYTES:
            groups.append({})
            total = 0
        groups[-1][document_id] = StoredContent(size=size)
        total += size
    return Read(groups=[Group(inputs=group) for group in groups if group])


async def read_contents(
    store: IngestionStore, step: Step, ids: Sequence[int]
) -> dict[int, Content | Settled]:
    """The stored content of each document still in the step's state, else its outcome
    (``skipped``, or an ``IngestionError`` when the content is missing)."""
    found = await store.read_inputs(
        step, "blob_input", ids, needs=3, error="the document's content is missing"
    )
    return {
        document_id: row
        if not isinstance(row, tuple)
        else Content(media_type=row[1], filename=row[2], data=bytes(row[3]))
        for document_id, row in found.items()
    }
