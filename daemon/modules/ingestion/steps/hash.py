"""The hash step: SHA-256 of the content (on the CPU threads), then, in one transaction,
the claim of that content (:func:`~daemon.modules.ingestion.store.claim_hashes`): the
first document with these bytes is the original, a later one ends ``duplicate`` of it.
An empty document fails here (all empty documents are alike; none duplicates another).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from daemon.modules.ingestion.errors import EmptyContent
from daemon.modules.ingestion.states import DocumentState, step_named
from daemon.modules.ingestion.steps.contents import (
    StoredContent,
    read_contents,
    read_in_groups,
)
from daemon.modules.ingestion.steps.contract import Move, Read, Settled, StepWork, split
from daemon.modules.ingestion.store import claim_hashes

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.modules.ingestion.states import Step
    from daemon.modules.ingestion.steps.contract import JobOptions
    from daemon.modules.ingestion.store import IngestionStore
    from daemon.shared.cpu_runner import CpuRunner
    from daemon.shared.db.psycopg_trio import TrioConnection

# A document's move carries (its SHA-256, the original it duplicates or None).
Hashed = tuple[bytes, int | None]


@attrs.frozen
class HashStep(StepWork[StoredContent, bytes, Hashed]):
    step: ClassVar[Step] = step_named("hash")

    store: IngestionStore
    cpu: CpuRunner

    async def read(self, documents: Mapping[int, JobOptions]) -> Read[StoredContent]:
        groups = await read_in_groups(self.store, list(documents))
        return attrs.evolve(
            groups, groups=[attrs.evolve(g, transaction=True) for g in groups.groups]
        )

    async def compute(self, inputs: Mapping[int, StoredContent]) -> dict[int, bytes | Settled]:
        contents, settled = split(await read_contents(self.store, self.step, list(inputs)))
        outputs: dict[int, bytes | Settled] = dict(settled)
        datas: list[tuple[int, bytes]] = []
        for document_id, content in contents.items():
            if not content.data:
                outputs[document_id] = EmptyContent("the document is empty (0 bytes)")
            else:
                datas.append((document_id, content.data))
        if datas:
            outputs.update(await self.cpu.run(sha256_digests, datas))
        return outputs

    async def decide(
        self, conn: TrioConnection, outputs: Mapping[int, bytes]
    ) -> dict[int, Move[Hashed] | Settled]:
        originals = await claim_hashes(conn, outputs)
        moves: dict[int, Move[Hashed] | Settled] = {}
        for document_id, digest in outputs.items():
            original = originals.get(document_id)
            detail: dict[str, Any] = {"sha256": digest.hex()}
            if original is None:
                moves[document_id] = Move(
                    to_state=self.step.to_state, detail=detail, effect=(digest, None)
                )
            else:
                moves[document_id] = Move(
                    to_state=DocumentState.DUPLICATE,
                    detail=detail | {"duplicate_of": original},
                    effect=(digest, original),
                )
        return moves

    async def after(self, conn: TrioConnection, moved: Mapping[int, Move[Hashed]]) -> None:
        await self.store.set_hashes(
            conn, {i: move.effect for i, move in moved.items() if move.effect is not None}
        )


def sha256_digests(datas: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """On a CPU thread (hashlib releases the GIL for big inputs): each content's digest."""
    return [(document_id, hashlib.sha256(data).digest()) for document_id, data in datas]
