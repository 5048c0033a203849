"""The complete step: the document is done; the advance statement itself sets its
``completed_at`` and ``retain_until`` (the retention the store was given)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import attrs

from daemon.modules.ingestion.states import step_named
from daemon.modules.ingestion.steps.contract import Group, Move, Read, Settled, StepWork

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.modules.ingestion.states import Step
    from daemon.modules.ingestion.steps.contract import JobOptions


@attrs.frozen
class CompleteStep(StepWork[None, "Move[None]", None]):
    """Its input is the document alone; nothing to read (the state guard of the advance
    skips a document no longer in its state)."""

    step: ClassVar[Step] = step_named("complete")

    async def read(self, documents: Mapping[int, JobOptions]) -> Read[None]:
        return Read(groups=[Group(inputs=dict.fromkeys(documents))])

    async def compute(self, inputs: Mapping[int, None]) -> dict[int, Move[None] | Settled]:
        return {document_id: Move(to_state=self.step.to_state) for document_id in inputs}
