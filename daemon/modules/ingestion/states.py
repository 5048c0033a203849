"""The ingestion state machine as a pure transition table (DESIGN.md section 3).

    received -> fetched -> hashed -> extracted -> normalized -> analyzed -> routed -> completed

Each arrow is a :class:`Step`: a job on its own queue that moves a document from
``from_state`` to ``to_state``. The hash step may end the document as ``duplicate``; any
step may end it as ``failed``. Operators move a failed document back to the state its
failed step starts from (retry), and a completed one back to ``normalized`` (reanalyze).
No I/O here: the pipeline asks this module what comes next (``next_step``) and where a
step's outcome leads (``transition``, also what refuses an impossible move).
"""

from __future__ import annotations

from enum import StrEnum

import attrs

from daemon.modules.ingestion.errors import InvalidTransition


class DocumentState(StrEnum):
    """Values equal the ``document_state`` enum in the database."""

    RECEIVED = "received"
    FETCHED = "fetched"
    HASHED = "hashed"
    EXTRACTED = "extracted"
    NORMALIZED = "normalized"
    ANALYZED = "analyzed"
    ROUTED = "routed"
    COMPLETED = "completed"
    DUPLICATE = "duplicate"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {DocumentState.COMPLETED, DocumentState.DUPLICATE, DocumentState.FAILED}
)


class Outcome(StrEnum):
    """How a step ended for a document."""

    ADVANCED = "advanced"  # to the step's to_state
    DUPLICATE = "duplicate"  # the hash step found an identical document
    FAILED = "failed"  # permanently, or out of attempts


@attrs.frozen
class Step:
    name: str
    from_state: DocumentState
    to_state: DocumentState

    @property
    def queue(self) -> str:
        return f"ingest.{self.name}"


STEPS: tuple[Step, ...] = (
    Step("fetch", DocumentState.RECEIVED, DocumentState.FETCHED),
    Step("hash", DocumentState.FETCHED, DocumentState.HASHED),
    Step("extract", DocumentState.HASHED, DocumentState.EXTRACTED),
    Step("normalize", DocumentState.EXTRACTED, DocumentState.NORMALIZED),
    Step("analyze", DocumentState.NORMALIZED, DocumentState.ANALYZED),
    Step("route", DocumentState.ANALYZED, DocumentState.ROUTED),
    Step("complete", DocumentState.ROUTED, DocumentState.COMPLETED),
)
DEAD_LETTER_QUEUE = "ingest.dead"

_BY_NAME = {step.name: step for step in STEPS}
_BY_QUEUE = {step.queue: step for step in STEPS}
_FROM = {step.from_state: step for step in STEPS}


def step_named(name: str) -> Step:
    """Raises KeyError for an unknown step."""
    return _BY_NAME[name]


def step_of_queue(queue: str) -> Step | None:
    return _BY_QUEUE.get(queue)


def step_from(state: DocumentState) -> Step | None:
    """The step that moves a document on from ``state`` (None: terminal)."""
    return _FROM.get(state)


def next_step(step: Step) -> Step | None:
    """The step that follows ``step`` when it advances (None after the last)."""
    return _FROM.get(step.to_state)


def transition(state: DocumentState, step: Step, outcome: Outcome) -> DocumentState:
    """The state after ``step`` ended with ``outcome`` for a document in ``state``.

    Raises:
        InvalidTransition: ``step`` does not start from ``state`` (a redelivered job whose
            work is already done, or a document moved by an operator meanwhile), or the
            outcome is not possible for this step.
    """
    if state is not step.from_state:
        raise InvalidTransition(f"step {step.name} starts from {step.from_state}, not {state}")
    if outcome is Outcome.ADVANCED:
        return step.to_state
    if outcome is Outcome.DUPLICATE:
        if step.name != "hash":
            raise InvalidTransition(f"only the hash step finds duplicates, not {step.name}")
        return DocumentState.DUPLICATE
    return DocumentState.FAILED


def retry_target(state: DocumentState, failed_step: str | None) -> Step:
    """The step a failed document restarts at.

    Raises:
        InvalidTransition: the document is not failed, or its failed step is unknown.
    """
    if state is not DocumentState.FAILED:
        raise InvalidTransition(f"only failed documents can be retried (this one is {state})")
    if failed_step not in _BY_NAME:
        raise InvalidTransition(f"the document failed at an unknown step: {failed_step!r}")
    return _BY_NAME[failed_step]


REANALYZABLE = frozenset({DocumentState.ANALYZED, DocumentState.ROUTED, DocumentState.COMPLETED})


def reanalyze_target(state: DocumentState, failed_step: str | None) -> Step:
    """The step a reanalysis starts at: ``analyze``, from ``normalized``.

    Allowed once a document has its normalized text: analyzed, routed, completed, or
    failed at analysis or routing.

    Raises:
        InvalidTransition: the document has no normalized text to analyse.
    """
    if state in REANALYZABLE or (
        state is DocumentState.FAILED and failed_step in ("analyze", "route", "complete")
    ):
        return _BY_NAME["analyze"]
    raise InvalidTransition(f"a {state} document cannot be reanalysed")
