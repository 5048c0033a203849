"""The route step: the routing rules decide on each document's current analysis whether
a case opens (with its SLA due time, assignee and tags). Deciding is pure and quick, so
the documents are read, locked (in id order), decided and moved on, and their cases
opened, in one transaction: a reanalysis cannot slip in between."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

import attrs

from daemon.modules.cases import decide, open_cases, raise_case_severity
from daemon.modules.ingestion.states import step_named
from daemon.modules.ingestion.steps.contract import Group, Move, Read, Settled, StepWork, split
from daemon.modules.ingestion.store import analysis_from_row

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.modules.analysis import Taxonomy
    from daemon.modules.cases import RoutingDecision, RoutingRules
    from daemon.modules.ingestion.states import Step
    from daemon.modules.ingestion.steps.contract import JobOptions
    from daemon.modules.ingestion.store import IngestionStore
    from daemon.shared.db.psycopg_trio import TrioConnection

# A document's move carries (the analysis routed, the decision).
Routed = tuple[int, "RoutingDecision"]


@attrs.frozen
class RouteStep(StepWork[None, None, Routed]):
    """Its input is the document alone: what it routes is read under lock in
    :meth:`decide`."""

    step: ClassVar[Step] = step_named("route")

    store: IngestionStore
    taxonomy: Taxonomy
    routing: RoutingRules

    async def read(self, documents: Mapping[int, JobOptions]) -> Read[None]:
        return Read(groups=[Group(inputs=dict.fromkeys(documents), transaction=True)])

    async def compute(self, inputs: Mapping[int, None]) -> dict[int, Settled | None]:
        return dict(inputs)

    async def decide(
        self, conn: TrioConnection, outputs: Mapping[int, None]
    ) -> dict[int, Move[Routed] | Settled]:
        rows, settled = split(await self.store.route_inputs(conn, self.step, list(outputs)))
        moves: dict[int, Move[Routed] | Settled] = dict(settled)
        now = datetime.now(UTC)
        for document_id, row in rows.items():
            decision = decide(analysis_from_row(row[1:], self.taxonomy), self.routing, now)
            moves[document_id] = Move(
                to_state=self.step.to_state,
                detail={"open_case": decision.open_case, "reason": decision.reason},
                effect=(int(row[1]), decision),
            )
        return moves

    async def after(self, conn: TrioConnection, moved: Mapping[int, Move[Routed]]) -> None:
        """Open the cases of documents routed to one; a document that has its case already
        (a reanalysis) raises the case's severity and deadline when more severe."""
        routed = [
            (document_id, *move.effect)
            for document_id, move in sorted(moved.items())
            if move.effect is not None and move.effect[1].open_case
        ]
        opened = await open_cases(conn, routed)
        await raise_case_severity(conn, [r for r in routed if r[0] not in opened])
