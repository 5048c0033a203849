"""The normalize step: NFC, control characters, whitespace, a language guess and the
analyzer's chunks (in the CPU worker processes), written with the advance in one statement (the
``write_normalized`` CTE; the language rides on the document's row)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import attrs

from daemon.modules.ingestion.normalize import normalize
from daemon.modules.ingestion.states import step_named
from daemon.modules.ingestion.steps.contract import Group, Move, Read, Settled, StepWork, split

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.modules.ingestion.states import DocumentState, Step
    from daemon.modules.ingestion.steps.contract import JobOptions
    from daemon.modules.ingestion.store import IngestionStore
    from daemon.shared.cpu_runner import CpuRunner


@attrs.frozen(kw_only=True)
class NormalizeInput:
    """The document's extracted text."""

    text: str


@attrs.frozen
class NormalizeStep(StepWork[NormalizeInput, "Move[None]", None]):
    step: ClassVar[Step] = step_named("normalize")
    writes: ClassVar[str | None] = "write_normalized"

    store: IngestionStore
    cpu: CpuRunner
    chunk_chars: int
    max_chunks: int

    async def read(self, documents: Mapping[int, JobOptions]) -> Read[NormalizeInput]:
        found = await self.store.read_inputs(
            self.step,
            "extracted_input",
            list(documents),
            needs=1,
            error="the document's extracted text is missing",
        )
        rows, settled = split(found)
        inputs = {i: NormalizeInput(text=str(row[1])) for i, row in rows.items()}
        return Read(groups=[Group(inputs=inputs)] if inputs else [], settled=settled)

    async def compute(
        self, inputs: Mapping[int, NormalizeInput]
    ) -> dict[int, Move[None] | Settled]:
        texts = {document_id: value.text for document_id, value in inputs.items()}
        return await self.cpu.run(
            normalize_all, texts, self.step.to_state, self.chunk_chars, self.max_chunks
        )


def normalize_all(
    texts: Mapping[int, str], to_state: DocumentState, chunk_chars: int, max_chunks: int
) -> dict[int, Move[None] | Settled]:
    """In a CPU worker process: each document's normalized text and chunks, or its error."""
    moves: dict[int, Move[None] | Settled] = {}
    for document_id, text in texts.items():
        try:
            result = normalize(text, chunk_chars=chunk_chars, max_chunks=max_chunks)
        except Exception as exc:  # this document's outcome
            moves[document_id] = exc
            continue
        moves[document_id] = Move(
            to_state=to_state,
            detail={
                "chars": result.chars,
                "language": result.language,
                "chunks": len(result.chunks),
                "truncated": result.truncated,
            },
            columns={"language": result.language},
            row={
                "normalized": result.text,
                "chunks": list(result.chunks),
                "truncated": result.truncated,
            },
        )
    return moves
