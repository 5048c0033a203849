"""The shape every step has, and what the runner hands back per document.

A step (a subclass of :class:`StepWork`) works on a batch of documents in three parts,
each taking a typed value per document and giving back one per document (a new value,
or the document's outcome already: :data:`Settled`):

1. :meth:`StepWork.read`: its frozen input per document (``I``), in :class:`Group` s;
   the documents not in the step's state any more are ``skipped``, those whose input is
   missing get an ``IngestionError``;
2. :meth:`StepWork.compute`: the work (``O`` per document), outside any transaction;
   heavy work goes to the CPU threads the step was given;
3. in the runner's one transaction per group (one autocommit statement for most steps):
   :meth:`StepWork.decide` turns each output into a :class:`Move` (the state reached,
   the history detail, what the advance statement writes with it), the runner advances
   the documents, and :meth:`StepWork.after` writes what follows from the moves of the
   documents that did move.

A step gets what it needs (store, CPU threads, analyzers, policies) when it is built,
never through the runner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

import attrs

if TYPE_CHECKING:
    from daemon.modules.ingestion.states import DocumentState, Step
    from daemon.shared.db.psycopg_trio import TrioConnection


@attrs.frozen(kw_only=True)
class StepResult:
    """What a step did: ``advanced`` to ``state``, ``skipped`` (not in its state any
    more), or ``failed`` with ``error``. Stored as the job's result."""

    outcome: str
    state: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}


SKIPPED = StepResult(outcome="skipped")

# A document's outcome, known before (or without) its advance: ``skipped``, or the
# exception its job ends with (an ``IngestionError`` fails the document).
Settled = StepResult | Exception
JobOptions = Mapping[str, Any]  # a step job's payload (e.g. a reanalysis' analyzer)

I = TypeVar("I")  # noqa: E741 (a step's input per document)
O = TypeVar("O")  # noqa: E741 (a step's output per document)
E = TypeVar("E")  # what a step writes after the advance for a document moved


@attrs.frozen(kw_only=True)
class Move(Generic[E]):
    """A document's way on: the state it reaches (the step's ``to_state``, or
    ``duplicate``), its history detail, its new ``columns`` (language, category,
    severity), the ``row`` the step's own CTE writes, and the step's ``effect``: what
    :meth:`StepWork.after` writes for it once it moved."""

    to_state: DocumentState
    detail: Mapping[str, Any] = attrs.field(factory=dict)
    columns: Mapping[str, Any] = attrs.field(factory=dict)
    row: Mapping[str, Any] | None = None
    effect: E | None = None


@attrs.frozen(kw_only=True)
class Group(Generic[I]):
    """Inputs worked together, then written in one statement or ``transaction``."""

    inputs: Mapping[int, I]
    transaction: bool = False


@attrs.frozen(kw_only=True)
class Read(Generic[I]):
    """What :meth:`StepWork.read` found: the groups to work (one after the other, or all
    at once when ``concurrent``) and the documents already ``settled``."""

    groups: Sequence[Group[I]] = ()
    settled: Mapping[int, Settled] = attrs.field(factory=dict)
    concurrent: bool = False


def split(found: Mapping[int, I | Settled]) -> tuple[dict[int, I], dict[int, Settled]]:
    """Per-document values apart from the outcomes already settled."""
    values: dict[int, I] = {}
    settled: dict[int, Settled] = {}
    for document_id, value in found.items():
        if isinstance(value, StepResult | Exception):
            settled[document_id] = value
        else:
            values[document_id] = value
    return values, settled


class StepWork(Generic[I, O, E]):
    """One step's work (see the module docstring). Subclasses set ``step`` and, when the
    advance statement writes more, ``writes`` (a CTE of ``queries.sql``) and
    ``new_analyses``; ``decide`` and ``after`` default to "the outputs are the moves" and
    "nothing more to write"."""

    step: ClassVar[Step]
    writes: ClassVar[str | None] = None
    new_analyses: ClassVar[bool] = False

    async def read(self, documents: Mapping[int, JobOptions]) -> Read[I]:
        """Each document's input (or outcome), in groups. Idempotent: reads only."""
        raise NotImplementedError

    async def compute(self, inputs: Mapping[int, I]) -> Mapping[int, O | Settled]:
        """Each document's output, or its outcome (an exception for this document only:
        the others go on). Outside any transaction; cancellation loses nothing."""
        raise NotImplementedError

    async def decide(
        self, conn: TrioConnection, outputs: Mapping[int, O]
    ) -> Mapping[int, Move[E] | Settled]:
        """In the runner's transaction (or autocommit statement), before the advance."""
        return cast("Mapping[int, Move[E] | Settled]", outputs)

    async def after(self, conn: TrioConnection, moved: Mapping[int, Move[E]]) -> None:
        """In the runner's transaction, after the advance: the moved documents' writes."""
        return None
