"""The extract step: the text of each document's content (in the CPU worker processes), written
with the advance in one statement (the ``write_extracted`` CTE). Unknown types,
corrupt and encrypted files fail their document alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import attrs

from daemon.modules.ingestion.extraction import extract_text
from daemon.modules.ingestion.states import step_named
from daemon.modules.ingestion.steps.contents import (
    Content,
    StoredContent,
    read_contents,
    read_in_groups,
)
from daemon.modules.ingestion.steps.contract import Move, Read, Settled, StepWork, split

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.modules.ingestion.states import DocumentState, Step
    from daemon.modules.ingestion.steps.contract import JobOptions
    from daemon.modules.ingestion.store import IngestionStore
    from daemon.shared.cpu_runner import CpuRunner


@attrs.frozen
class ExtractStep(StepWork[StoredContent, "Move[None]", None]):
    step: ClassVar[Step] = step_named("extract")
    writes: ClassVar[str | None] = "write_extracted"

    store: IngestionStore
    cpu: CpuRunner

    async def read(self, documents: Mapping[int, JobOptions]) -> Read[StoredContent]:
        return await read_in_groups(self.store, list(documents))

    async def compute(self, inputs: Mapping[int, StoredContent]) -> dict[int, Move[None] | Settled]:
        contents, settled = split(await read_contents(self.store, self.step, list(inputs)))
        outputs: dict[int, Move[None] | Settled] = dict(settled)
        if contents:
            outputs.update(await self.cpu.run(extract_all, contents, self.step.to_state))
        return outputs


def extract_all(
    contents: Mapping[int, Content], to_state: DocumentState
) -> dict[int, Move[None] | Settled]:
    """In a CPU worker process: each document's text, or its error."""
    moves: dict[int, Move[None] | Settled] = {}
    for document_id, content in contents.items():
        try:
            extracted = extract_text(content.data, content.media_type, filename=content.filename)
        except Exception as exc:  # this document's outcome
            moves[document_id] = exc
            continue
        extraction = {
            "media_type": extracted.media_type,
            "charset": extracted.charset,
            "pages": extracted.pages,
            "truncated": extracted.truncated,
            "warnings": list(extracted.warnings),
        }
        moves[document_id] = Move(
            to_state=to_state,
            detail={"chars": len(extracted.text)} | extraction,
            row={"text": extracted.text, "extraction": extraction},
        )
    return moves
